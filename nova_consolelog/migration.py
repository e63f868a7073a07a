# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The steps of console-log migration, driver-independent.

Live migration first (below); a new QEMU on the same host, a rebuild, and
cold migration and resize (their sections further down) reuse its stash,
pull and history machinery.

A compute driver calls these at the matching points of nova's live
migration; nothing here imports nova.

Why the steps sit where they do:

* On the source, nova's ``ComputeManager._post_live_migration`` calls
  ``driver.post_live_migration()``, then ``post_live_migration_at_source()``,
  then ``driver.cleanup()`` — which deletes the instance directory,
  console.log included, when the instance path is not shared — and only then
  the RPC ``post_live_migration_at_destination``. So the source moves its
  chain into a stash in ``post_live_migration`` (after the migrated domain has
  shut off, so the log is complete), and the destination pulls the stash
  afterwards; the source deletes the stash only when the destination has
  verified and installed it and says so (``release``).
* With nova's ``<log append="off"/>``, virtlogd unlinks ``console.log`` and
  every ``console.log.N`` when a QEMU starts, including the incoming QEMU on
  the destination. On a shared instance path that would wipe the source's
  chain at the start of the migration, so the destination moves the chain
  aside in ``pre_live_migration``, before its QEMU starts; the source's QEMU
  keeps writing into the moved file through virtlogd's open descriptor.
* Between the moment the guest runs on the destination and the end of the
  import, the console output is split between two hosts. Each host keeps a
  small *hand-over record* naming its peer; while it exists a console read
  fetches the peer's part over RPC and merges it, so no read is ever missing
  lines (nova's blueprint accepted "almost empty" output there; we do not).

No public method here raises into the migration: a failure logs one warning,
leaves the data where a retry finds it (the hand-over record, the stash),
and returns. ``retry_pending`` retries unfinished imports and expires old
stashes.
"""

import json
import os
import re
import stat
import threading
import time

from oslo_log import log as logging
import oslo_messaging
from oslo_utils import uuidutils

from nova_consolelog import catcher as cl_catcher
from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog.objects import console_log as objects
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

LOG = logging.getLogger(__name__)

ROLE_SOURCE = 'source'
ROLE_DESTINATION = 'destination'
RECORDS_DIR = '.handover'
# Under the stash root: files a RotationCatcher keeps during a hand-over.
CATCH_DIR = '.catch'
# After a failed call, console reads leave a peer alone this long.
PEER_QUIET_SECONDS = 60
# A console read that finds the hand-over state changed under it (a stash
# made or released, an import committed) starts again, this many times.
READ_ATTEMPTS = 5
STATE_INSTALLED = 'installed'


class _StateChanged(Exception):
    """The hand-over moved on during a read; read again."""


class HandoverRecord:
    """What this host knows of an unfinished console-log hand-over.

    Kept as a small JSON file per instance under the stash root, written
    atomically, so that a restarted nova-compute still knows which peer holds
    the other part of a console log and that an import is still owed.
    """

    def __init__(self, directory, instance_uuid):
        self.path = os.path.join(directory, instance_uuid + '.json')
        self.instance_uuid = instance_uuid

    def load(self):
        try:
            data = fileutils.load_json(self.path)
            if not isinstance(data, dict):
                raise ValueError('not a JSON object')
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError, exception.ConsoleLogError) as e:
            LOG.warning('Ignoring unreadable console-log hand-over record '
                        '%s: %s', self.path, e)
            return None

    def save(self, **data):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        data.setdefault('instance_uuid', self.instance_uuid)
        data.setdefault('created', time.time())
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return data

    def update(self, create=True, **changes):
        """Change the record; with ``create`` False, only an existing one.

        Returns the record, or None when there was none to change.
        """
        data = self.load()
        if data is None:
            if not create:
                return None
            data = {}
        data.update(changes)
        return self.save(**data)

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @staticmethod
    def all(directory):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return [HandoverRecord(directory, n[:-len('.json')])
                for n in sorted(names)
                if n.endswith('.json')
                and uuidutils.is_uuid_like(n[:-len('.json')])]


def _guarded(step):
    """Run a migration step; never let an error escape into the migration."""
    def wrapper(self, instance_uuid, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return step(self, instance_uuid, *args, **kwargs)
        except Exception as e:
            LOG.warning('Console-log migration step %s failed for instance '
                        '%s; the live migration goes on and the console log '
                        'stays where a retry can find it: %s',
                        step.__name__, instance_uuid, e,
                        exc_info=not isinstance(
                            e, exception.ConsoleLogError))
            return None
    wrapper.__name__ = step.__name__
    wrapper.__doc__ = step.__doc__
    return wrapper


class ConsoleLogMigration:
    """Console-log migration steps for the compute host ``host``.

    :param conf: ConfigOpts with our options registered.
    :param host: this compute host's name (nova's ``CONF.host``).
    :param rpcapi: a ``rpc.api.ConsoleLogAPI`` client, or None when this
        host cannot talk to its peers (then only local steps run).
    :param instances_path: directory holding instance directories; defaults
        to ``[consolelog] instances_path``.
    :param wait_for_shutoff: callable ``(domain, timeout) -> bool`` used by
        the source step; defaults to :func:`virt.wait_for_shutoff`.
    """

    def __init__(self, conf, host, rpcapi, instances_path=None,
                 wait_for_shutoff=None):
        self.conf = conf
        self.host = host
        self.rpcapi = rpcapi
        group = conf.consolelog
        self.instances_path = instances_path or group.instances_path
        self.stash_root = group.stash_path or os.path.join(
            self.instances_path, '.consolelog-stash')
        # Per host: on a shared instance path both hosts see one stash root.
        self.records_dir = os.path.join(
            self.stash_root, RECORDS_DIR,
            re.sub(r'[^A-Za-z0-9_.-]', '_', host))
        self._wait_for_shutoff = wait_for_shutoff
        self._peer_quiet_until = {}
        # instance uuid -> RotationCatcher, from pre_live_migration on a
        # shared path until the import or the rollback (see catcher).
        self._catchers = {}
        # Instances whose import runs in this process now (see _import).
        self._importing = set()
        self._importing_lock = threading.Lock()

    @property
    def enabled(self):
        return self.conf.consolelog.enabled

    # -- helpers ---------------------------------------------------------

    def chain(self, instance_uuid):
        if not uuidutils.is_uuid_like(instance_uuid):
            raise exception.InvalidInput(
                reason='malformed instance uuid %r' % (instance_uuid,))
        return cl_chain.ConsoleLogChain(
            os.path.join(self.instances_path, instance_uuid),
            instance=instance_uuid, conf=self.conf)

    def record(self, instance_uuid):
        return HandoverRecord(self.records_dir, instance_uuid)

    def lock(self, instance_uuid, shared=False):
        """The host's hand-over lock; see ``stash.handover_lock``."""
        return cl_stash.handover_lock(self.instances_path, shared=shared)

    def stashes(self, instance_uuid):
        """This host's stashes of an instance, oldest first.

        Without a resize's stash its destination has installed: the
        history there holds those bytes now (on the same host, or through a
        shared stash root, a read would repeat them); the stash only waits
        for the confirm or a revert (see ``held_stashes``).
        """
        return [s for s in self._all_stashes(instance_uuid)
                if not (s.held and s.installed_by is not None)]

    def held_stashes(self, instance_uuid):
        """The stashes of an instance's resize, installed or not."""
        return [s for s in self._all_stashes(instance_uuid) if s.held]

    def _all_stashes(self, instance_uuid):
        return cl_stash.Stash.list(instance_uuid, root=self.stash_root,
                                   conf=self.conf)

    def _wait(self, domain):
        timeout = self.conf.consolelog.shutoff_timeout
        if self._wait_for_shutoff is not None:
            return self._wait_for_shutoff(domain, timeout)
        from nova_consolelog import virt
        return virt.wait_for_shutoff(domain.connect(), domain, timeout)

    # -- the steps -------------------------------------------------------

    @_guarded
    def live_migration_started(self, instance_uuid, dest_host,
                               shared_instance_path):
        """Source: note the destination before the guest moves."""
        self.record(instance_uuid).save(
            role=ROLE_SOURCE, peer=dest_host,
            shared=bool(shared_instance_path), state='migrating')

    @_guarded
    def pre_live_migration(self, instance_uuid, source_host,
                           shared_instance_path):
        """Destination, before the incoming QEMU starts.

        On a shared instance path the chain in the instance directory is the
        source's, and virtlogd is about to unlink it when the destination's
        QEMU starts: move it into a stash now (rename, no copy).
        """
        stash_ids = []
        if shared_instance_path:
            chain = self.chain(instance_uuid)
            self._start_catcher(instance_uuid, chain)
            with self.lock(instance_uuid):
                stash = None
                if os.path.isdir(chain.directory) and chain.scan():
                    stash = cl_stash.Stash.create(
                        instance_uuid, chain, root=self.stash_root,
                        live_names=(self.conf.consolelog.log_name,),
                        conf=self.conf)
            if stash is not None:
                stash_ids.append(stash.stash_id)
                LOG.info('Moved the console log of instance %s aside to '
                         'stash %s before the incoming QEMU starts',
                         instance_uuid, stash.stash_id)
        self.record(instance_uuid).save(
            role=ROLE_DESTINATION, peer=source_host,
            shared=bool(shared_instance_path), stash_ids=stash_ids,
            state='migrating')

    @_guarded
    def before_qemu_start(self, instance_uuid):
        """Same host, before nova starts a new QEMU: keep the output so far.

        With nova's ``<log append="off"/>`` virtlogd unlinks
        ``console.log`` and every ``console.log.N`` whenever a QEMU starts:
        at a hard or soft reboot, a stop and start, a resume, a rescue and
        unrescue, a rebuild, a revert of a resize... (not only at a live
        migration). So the files holding output become history first, by
        rename (zero copy, oldest first): virtlogd never touches those
        names, and a QEMU still writing (a soft reboot renames before the
        guest has shut down) keeps writing into the renamed file through
        virtlogd's descriptor. No separator is written: history holds the
        guest's bytes only. Retention (``history_max_*``) applies.

        Skipped while an import into this host is still owed (the imported
        part is older than anything here and must come first).

        :returns: the history names given, or None.
        """
        chain = self.chain(instance_uuid)
        record = self.record(instance_uuid).load()
        if record is not None and record.get('hold') and \
                record.get('state') == 'migrating':
            # A resize's destination: the chain here is new, the source's
            # comes in after this start (cold_migration_finished).
            return None
        if record is not None and record.get('role') == ROLE_DESTINATION:
            LOG.warning('Instance %s restarts while its console log is '
                        'still being handed over from %s; the output since '
                        'the migration is not kept', instance_uuid,
                        record.get('peer'))
            return None
        with self.lock(instance_uuid):
            if not fileutils.is_real_dir(chain.directory):
                return None
            files = [f for f in chain.scan()
                     if f.kind != cl_fields.FileKind.HISTORY and f.size]
            if not files:
                return None
            names = chain.adopt_as_history(
                [chain.path(f.name) for f in files])
            chain.apply_retention(keep=names[-1])
        LOG.info('Kept the console log of instance %s (%d byte(s)) as %s '
                 'before its new QEMU starts', instance_uuid,
                 sum(f.size for f in files), ', '.join(names))
        return names

    @_guarded
    def before_instance_dir_removed(self, instance_uuid):
        """Same host, the instance stays: nova deletes its directory now.

        A rebuild is nova's ``destroy`` (``destroy_disks=True``: the whole
        instance directory goes, ``console.log`` and our history with it)
        and then ``spawn`` on the same host. The chain moves into a stash
        outside the directory (rename, zero copy) until
        ``after_instance_dir_removed`` puts it back.

        :returns: the stash id, or None when there was nothing to keep.
        """
        chain = self.chain(instance_uuid)
        with self.lock(instance_uuid):
            if not fileutils.is_real_dir(chain.directory) or \
                    not chain.scan():
                return None
            stash = cl_stash.Stash.create(
                instance_uuid, chain, root=self.stash_root,
                live_names=(self.conf.consolelog.log_name,), conf=self.conf)
        LOG.info('Moved the console log of instance %s to stash %s before '
                 'its instance directory is deleted', instance_uuid,
                 stash.stash_id)
        return stash.stash_id

    @_guarded
    def after_instance_dir_removed(self, instance_uuid, stash_id):
        """Put the chain kept by ``before_instance_dir_removed`` back.

        Into a new instance directory (nova's spawn creates it if missing
        and keeps what is there); the next QEMU start turns it into
        history as at any other start.
        """
        with self.lock(instance_uuid):
            for stash in self.stashes(instance_uuid):
                if stash.stash_id == stash_id:
                    chain = self.chain(instance_uuid)
                    os.makedirs(chain.directory, exist_ok=True)
                    self._restore(chain, stash)
                    return True
        LOG.warning('Stash %s of instance %s is gone; its console output '
                    'before the rebuild is not kept', stash_id,
                    instance_uuid)
        return False

    # -- cold migration and resize ----------------------------------------
    #
    # nova's migrate_disk_and_power_off renames the source's instance
    # directory to ``<dir>_resize`` and copies only the disks; the
    # destination's QEMU starts on a directory without console output; a
    # confirm deletes ``<dir>_resize``, console.log included; a revert
    # renames it back and starts the guest on the source again. So the
    # source stashes the chain at once, *held* until the confirm: the
    # destination installs it without deleting it (a revert still needs
    # it, and the destination's copy goes with nova's destroy there).

    def resize_dir(self, instance_uuid):
        """Where nova keeps the source's instance directory until confirm."""
        return self.chain(instance_uuid).directory + '_resize'

    @_guarded
    def cold_migration_started(self, instance_uuid, dest_host,
                               resize_dir=None):
        """Source, after nova powered off and renamed the directory.

        The guest is off, so the stash gets hash lists (no live names);
        ``dest_host`` (nova's host name of the destination, None if
        unknown) is the only host granted a pull. Zero copy: a rename on
        the instances filesystem.

        :returns: the stash id, or None when there was nothing to keep.
        """
        directory = resize_dir or self.resize_dir(instance_uuid)
        chain = cl_chain.ConsoleLogChain(directory, instance=instance_uuid,
                                         conf=self.conf)
        with self.lock(instance_uuid):
            if not fileutils.is_real_dir(directory) or not chain.scan():
                return None
            stash = cl_stash.Stash.create(
                instance_uuid, chain, root=self.stash_root, conf=self.conf,
                destination=dest_host, hold=cl_stash.HOLD_CONFIRM)
        LOG.info('Stashed the console log of instance %s (%s) for %s until '
                 'the resize is confirmed', instance_uuid, stash.stash_id,
                 dest_host)
        return stash.stash_id

    @_guarded
    def cold_migration_finishing(self, instance_uuid, source_host):
        """Destination, before nova starts the guest here.

        From that start until the install, console reads here take the
        older part from the source (the hand-over record names it), as
        during a live migration. Nothing is written for a stash this host
        sees itself: reads find it.
        """
        if source_host is None or source_host == self.host or any(
                s.destination in (None, self.host)
                for s in self.held_stashes(instance_uuid)):
            return
        self.record(instance_uuid).save(
            role=ROLE_DESTINATION, peer=source_host, shared=False,
            state='migrating', hold=True)

    @_guarded
    def cold_migration_finished(self, instance_uuid, source_host):
        """Destination, after nova started the guest here: install.

        A stash this host sees (same-host resize, or a shared stash root)
        is copied in locally; otherwise it is pulled from ``source_host``
        with the hand-over record written first, so that ``retry_pending``
        finishes a failed pull. Either way the source's stash stays until
        the confirm (``Stash.settle_install``).
        """
        local = [s for s in self.held_stashes(instance_uuid)
                 if s.destination in (None, self.host)]
        if local:
            chain = self.chain(instance_uuid)
            with self.lock(instance_uuid):
                os.makedirs(chain.directory, exist_ok=True)
                for stash in self.held_stashes(instance_uuid):
                    if stash.destination not in (None, self.host) or \
                            stash.installed_by is not None:
                        continue
                    name = stash.install_as_history(chain, release=False)
                    stash.settle_install(self.host)
                    LOG.info('Installed console-log stash %s of instance %s '
                             'as %s; kept until the resize is confirmed',
                             stash.stash_id, instance_uuid, name)
            return True
        if source_host is None or source_host == self.host:
            return False
        self.record(instance_uuid).update(
            role=ROLE_DESTINATION, peer=source_host, shared=False,
            state='pulling', hold=True)
        return self._import(instance_uuid, source_host, False)

    @_guarded
    def cold_migration_confirmed(self, instance_uuid):
        """Source, after nova deleted ``<dir>_resize``: drop what is held.

        A stash its destination installed goes now; one not installed yet
        is marked confirmed and goes with the destination's release (or
        after ``stash_expiry``).
        """
        with self.lock(instance_uuid):
            for stash in self.held_stashes(instance_uuid):
                if stash.settle_confirm():
                    LOG.info('Released console-log stash %s of instance %s '
                             'at the confirm of its resize', stash.stash_id,
                             instance_uuid)
                else:
                    LOG.info('Console-log stash %s of instance %s is kept '
                             'until %s has installed it', stash.stash_id,
                             instance_uuid, stash.destination)

    @_guarded
    def cold_migration_reverted(self, instance_uuid):
        """Source, the directory renamed back, before the guest starts.

        The held stash moves back into the instance directory (rename);
        the QEMU start that follows turns it into history like any other
        chain. Returns the number of stashes restored.
        """
        with self.lock(instance_uuid):
            held = self.held_stashes(instance_uuid)
            if held:
                chain = self.chain(instance_uuid)
                os.makedirs(chain.directory, exist_ok=True)
                for stash in held:
                    self._restore(chain, stash)
                    LOG.info('Restored console-log stash %s of instance %s '
                             'at the revert of its resize', stash.stash_id,
                             instance_uuid)
        return len(held)

    @_guarded
    def cold_migration_abandoned(self, instance_uuid):
        """Destination, the resize reverted: no import is owed any more.

        The source takes its held stash back; nova destroys this host's
        copy of the instance, installed history included.
        """
        record = self.record(instance_uuid)
        data = record.load()
        if data is not None and data.get('hold'):
            record.remove()

    def _start_catcher(self, instance_uuid, chain):
        """Watch the shared directory until the import; see catcher."""
        old = self._catchers.pop(instance_uuid, None)
        if old is not None:
            old.cleanup()
        if not os.path.isdir(chain.directory):
            return
        keep_dir = os.path.join(self.stash_root, CATCH_DIR, '%s-%s' % (
            instance_uuid, uuidutils.generate_uuid(dashed=False)[:8]))
        watcher = cl_catcher.RotationCatcher(chain.directory, keep_dir,
                                             chain.log_name)
        try:
            self._catchers[instance_uuid] = watcher.start()
        except OSError as e:
            watcher.cleanup()
            LOG.warning('Instance %s: cannot watch %s (%s); if the source\'s '
                        'virtlogd rolls over before this host\'s QEMU starts, '
                        'its last lines are lost', instance_uuid,
                        chain.directory, e)

    def _adopt_caught(self, instance_uuid, chain):
        """Take in what the catcher kept as the newest history (locked)."""
        watcher = self._catchers.pop(instance_uuid, None)
        if watcher is None:
            return
        try:
            orphans = watcher.finish()
            if orphans:
                names = chain.adopt_as_history(orphans)
                LOG.info('Instance %s: the source\'s virtlogd rolled over '
                         'before this host\'s QEMU started, which unlinked '
                         'the new file; kept it as %s', instance_uuid,
                         ', '.join(names))
        finally:
            watcher.cleanup()

    @_guarded
    def post_live_migration_at_source(self, instance_uuid, dest_host,
                                      shared_instance_path, domain=None):
        """Source, after the guest runs on the destination, before cleanup.

        Waits for the migrated domain to shut off (so QEMU has written its
        last byte), then moves the chain into a stash outside the instance
        directory, where nova's cleanup cannot delete it.
        """
        record = self.record(instance_uuid)
        # A restarted nova-compute forgets the destination its driver saw
        # in live_migration(); the record from live_migration_started has it.
        dest_host = dest_host or (record.load() or {}).get('peer')
        if domain is not None and not self._wait(domain):
            LOG.warning('The migrated domain of instance %s did not shut '
                        'off within %ss; its console log is stashed anyway, '
                        'but output written after now will not be migrated',
                        instance_uuid, self.conf.consolelog.shutoff_timeout)
        if shared_instance_path:
            # The destination moved the chain aside in pre_live_migration
            # and installs it from the shared stash; nothing is left here.
            record.remove()
            return
        chain = self.chain(instance_uuid)
        with self.lock(instance_uuid):
            if not os.path.isdir(chain.directory) or not chain.scan():
                record.remove()
                return
            stash = cl_stash.Stash.create(instance_uuid, chain,
                                          root=self.stash_root,
                                          conf=self.conf,
                                          destination=dest_host)
            record.save(role=ROLE_SOURCE, peer=dest_host, shared=False,
                        state='stashed', stash_ids=[stash.stash_id])
        LOG.info('Stashed the console log of instance %s (%s) for %s',
                 instance_uuid, stash.stash_id, dest_host)

    @_guarded
    def post_live_migration_at_destination(self, instance_uuid, source_host,
                                           shared_instance_path):
        """Destination: bring the source's console log in as history.

        The hand-over record is marked first, so that a failure anywhere
        below leaves an import that ``retry_pending`` finishes later.
        """
        self.record(instance_uuid).update(
            role=ROLE_DESTINATION, peer=source_host,
            shared=bool(shared_instance_path), state='pulling')
        self._import(instance_uuid, source_host, shared_instance_path)

    def _import(self, instance_uuid, source_host, shared_instance_path):
        """Install what the source holds; one import per instance at once.

        The migration step and the periodic retry may both want the same
        import: the second one here leaves it to the first (the staging
        file's flock keeps other processes apart).
        """
        with self._importing_lock:
            if instance_uuid in self._importing:
                LOG.debug('Console-log import of instance %s is running '
                          'already', instance_uuid)
                return False
            self._importing.add(instance_uuid)
        try:
            return self._import_once(instance_uuid, source_host,
                                     shared_instance_path)
        finally:
            with self._importing_lock:
                self._importing.discard(instance_uuid)

    def _import_once(self, instance_uuid, source_host, shared_instance_path):
        record = self.record(instance_uuid)
        chain = self.chain(instance_uuid)
        os.makedirs(chain.directory, exist_ok=True)
        if shared_instance_path:
            with self.lock(instance_uuid):
                for stash in self.stashes(instance_uuid):
                    stash.install_as_history(chain)
                self._adopt_caught(instance_uuid, chain)
                record.remove()
            return True
        if self.rpcapi is None:
            raise exception.TransferFailed(
                instance=instance_uuid, host=source_host,
                reason='no RPC client on this host')
        try:
            # Without checksums: each pull has them computed beside its
            # transfer, and releases with what it installed.
            sets = self.rpcapi.list_stashes({}, source_host, instance_uuid)
        except exception.PeerUnsupported as e:
            LOG.warning('Console log of instance %s not migrated: %s',
                        instance_uuid, e)
            record.remove()
            return False
        # Every stash is installed before any is released, and the record
        # says so in between: until then a console read here takes the old
        # part from the source (and ignores the new history), from then on
        # from the history (and ignores the source).
        pulled = [transfer.pull(self.conf, self.rpcapi, source_host,
                                instance_uuid, stash_id=remote.stash_id,
                                chain=chain, release=False,
                                local_host=self.host)
                  for remote in sets]
        with self.lock(instance_uuid):
            # Never bring back a record another import has finished.
            record.update(create=False, state=STATE_INSTALLED)
        released = [self._release(source_host, instance_uuid, result)
                    for result in pulled]
        if all(released):
            record.remove()
        return True

    def _release(self, source_host, instance_uuid, result):
        """Ask the source to drop a stash we installed; False if it did not.

        A stash installed here and not released is asked again by
        ``retry_pending`` (the pull finds it in the ledger and only
        releases), until ``stash_expiry``.
        """
        if result.released:
            return True  # the source has no such stash any more
        try:
            self.rpcapi.release({}, source_host, instance_uuid,
                                result.stash_id, result.sha256s,
                                transfer_token=result.transfer_token,
                                puller_host=self.host)
            return True
        except Exception as e:
            LOG.warning('Console log of instance %s is installed, but %s did '
                        'not release its stash %s: %s (asked again later; '
                        'it expires there)', instance_uuid, source_host,
                        result.stash_id, str(e)[:300])
            return False

    @_guarded
    def rollback_at_source(self, instance_uuid):
        """Source: the migration failed; put any stash back in place."""
        self._restore_stashes(instance_uuid)
        self.record(instance_uuid).remove()

    @_guarded
    def rollback_at_destination(self, instance_uuid, source_host,
                                shared_instance_path):
        """Destination: the migration failed; give the chain back.

        Only a shared instance path has anything here: the chain moved aside
        in ``pre_live_migration`` goes back into the instance directory,
        which the source's QEMU has kept writing to all along.
        """
        if shared_instance_path:
            with self.lock(instance_uuid):
                self._restore_stashes_locked(instance_uuid)
                self._adopt_caught(instance_uuid, self.chain(instance_uuid))
        self.record(instance_uuid).remove()

    def _restore_stashes(self, instance_uuid):
        with self.lock(instance_uuid):
            self._restore_stashes_locked(instance_uuid)

    def _restore_stashes_locked(self, instance_uuid):
        chain = self.chain(instance_uuid)
        for stash in self.stashes(instance_uuid):
            os.makedirs(chain.directory, exist_ok=True)
            self._restore(chain, stash)
            LOG.info('Restored console-log stash %s of instance %s',
                     stash.stash_id, instance_uuid)

    def _restore(self, chain, stash):
        """Put a stash back after a failed migration, losing nothing.

        The source's QEMU still runs and may still write into the stashed
        ``console.log`` through virtlogd's descriptor, so the stash is
        never copied here. Usually the failed incoming QEMU's virtlogd left
        just an empty ``console.log``: it goes and the files move back
        under their names. Anything else in the way means the source's
        virtlogd has rolled over since the chain moved (on a shared path it
        rotates the names in the instance directory): what is there is
        newer than the stash, so the stash moves in by rename as the newest
        history, which virtlogd never touches.
        """
        stashed = [f.name for f in stash.chain.scan()]
        taken = [f for f in chain.scan() if f.name in set(stashed)]
        if not taken:
            stash.restore(chain.directory)
            return
        if [(f.name, f.size) for f in taken] == [(chain.log_name, 0)]:
            os.unlink(os.path.join(chain.directory, chain.log_name))
            stash.restore(chain.directory)
            return
        chain.adopt_as_history(
            [os.path.join(stash.path, name) for name in stashed])
        stash.release()
        LOG.warning('Instance %s: the console log was rotated since it was '
                    'moved aside; the moved files are back as history',
                    stash.instance_uuid)

    # -- reading ---------------------------------------------------------

    def get_console_output(self, instance_uuid, length=None):
        """The merged console output of an instance on this host.

        Outside a migration this is exactly nova's read extended by the
        imported history. During a hand-over the part held elsewhere (a
        stash, or the peer host) is merged in, oldest first. A read that
        finds the hand-over moved on under it (a stash made or released,
        an import committed) starts again.
        """
        max_bytes = self.conf.consolelog.max_console_bytes
        chain = self.chain(instance_uuid)
        if not self.enabled:
            return self._local_tail(chain, max_bytes, length)
        for attempt in range(READ_ATTEMPTS):
            try:
                merged = self._merged_tail(
                    instance_uuid, chain, max_bytes,
                    last_attempt=attempt == READ_ATTEMPTS - 1)
            except _StateChanged:
                continue
            if merged is not None:
                return cl_chain.last_lines(merged, length)
            break
        else:
            LOG.warning('Console log of instance %s kept changing hands '
                        'during %d reads; returning this host\'s part only',
                        instance_uuid, READ_ATTEMPTS)
        # Under the lock: a chain moved aside between the look at the
        # hand-over state and this read would read as empty.
        with self.lock(instance_uuid, shared=True):
            return self._local_tail(chain, max_bytes, length)

    def _local_tail(self, chain, max_bytes, length=None, read_inodes=None):
        try:
            return chain.read_tail(max_bytes, length,
                                   read_inodes=read_inodes)
        except exception.InstanceDirNotFound:
            return b''

    @staticmethod
    def _join(parts, max_bytes):
        return b''.join(parts)[-max_bytes:] if max_bytes else b''

    def _merged_tail(self, instance_uuid, chain, max_bytes, last_attempt):
        """Last ``max_bytes`` over every part; None: the peer is silent.

        Parts are read newest first. The older part may still grow while
        the newer one is read (the source's QEMU writes into its stash
        until it stops; on a shared path its virtlogd may even roll over
        into the instance directory): read in this order, such bytes are
        either in the result or newer than everything in it, never a gap.
        """
        with self.lock(instance_uuid, shared=True):
            record = self.record(instance_uuid).load()
            stashes = self.stashes(instance_uuid)
            if record is None and not stashes:
                # No hand-over: nova's read (plus history), still under the
                # lock so that a migration starting now cannot move the
                # chain away in the middle of it.
                return self._local_tail(chain, max_bytes)
            if (record is None or record.get('shared') or
                    self.rpcapi is None or
                    record.get('state') == STATE_INSTALLED):
                # Everything is on this host (or its shared storage).
                # Newest part first (see the docstring): a byte written
                # meanwhile into an older part is then in the result, or
                # newer than all of it, never a gap. The files the catcher
                # keeps are left out when the instance directory's read
                # already had them (virtlogd may unlink one between the
                # two reads).
                read = set()
                try:
                    local = self._local_tail(chain, max_bytes,
                                             read_inodes=read)
                    caught = self._caught_tail(instance_uuid, stashes,
                                               max_bytes, read)
                    older = [s.chain.read_tail(max_bytes) for s in stashes]
                except (exception.ConsoleLogError, OSError) as e:
                    raise _StateChanged() from e
                return self._join(older + [caught, local], max_bytes)
        peer = record['peer']
        if time.time() < self._peer_quiet_until.get(peer, 0):
            return None
        try:
            if record['role'] == ROLE_DESTINATION:
                return self._destination_tail(instance_uuid, chain, peer,
                                              record, max_bytes)
            return self._source_tail(instance_uuid, chain, peer, max_bytes,
                                     last_attempt)
        except _StateChanged:
            raise
        except (oslo_messaging.MessagingException,
                exception.PeerUnsupported) as e:
            # A peer without our endpoint looks like a slow one (the call
            # times out): do not make every console read wait for it.
            self._peer_quiet_until[peer] = time.time() + PEER_QUIET_SECONDS
            LOG.warning('Console output of instance %s may miss the part '
                        'held by %s (not asked again for %ss): %s',
                        instance_uuid, peer, PEER_QUIET_SECONDS, e)
            return None
        except exception.ConsoleLogError as e:
            LOG.warning('Console output of instance %s may miss the part '
                        'held by %s: %s', instance_uuid, peer, e)
            return None

    def _caught_tail(self, instance_uuid, stashes, max_bytes, read):
        """The last bytes of files a RotationCatcher keeps (shared path).

        Between the move aside and the import, the source's virtlogd may
        roll over into the shared instance directory; the destination's
        QEMU start then unlinks that file and only the catcher's hard link
        (under ``<stash_path>/.catch/``, shared too) holds the source's last
        lines until the import adopts them. They are newer than the stash
        and older than what the instance directory holds now. Only caught
        files no other name holds any more are read (a file still in the
        instance directory or a stash is read there), and none that the
        instance directory's read had (``read``: its inodes), which virtlogd
        may have unlinked since. Call under the hand-over lock.
        """
        root = os.path.join(self.stash_root, CATCH_DIR)
        try:
            dirs = [d for d in os.listdir(root)
                    if d.startswith(instance_uuid + '-')]
        except FileNotFoundError:
            return b''
        seen = set(read)
        for directory in [s.path for s in stashes]:
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    st = os.lstat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue
                seen.add((st.st_dev, st.st_ino))
        found = []
        for d in dirs:
            keep_dir = os.path.join(root, d)
            if not fileutils.is_real_dir(keep_dir):
                continue
            for name in os.listdir(keep_dir):
                path = os.path.join(keep_dir, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                # Only files nobody else holds: the catcher also links the
                # files virtlogd creates or renames in the instance
                # directory later on, which are newer than the read of that
                # directory and, while still there, not ours to show.
                if (st.st_dev, st.st_ino) in seen or not st.st_size or \
                        not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    continue
                found.append((st.st_mtime_ns, name, path))
        parts = []
        wanted = max_bytes
        for _mtime, _name, path in sorted(found, reverse=True):
            if wanted <= 0:
                break
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                         os.O_NONBLOCK)
            try:
                size = os.fstat(fd).st_size
                n = min(wanted, size)
                parts.append(os.pread(fd, n, size - n))
            finally:
                os.close(fd)
            wanted -= n
        return b''.join(reversed(parts))

    def _destination_tail(self, instance_uuid, chain, peer, record,
                          max_bytes):
        """Destination before the import: the source's part + our new one.

        Our history is left out until the record says the import is
        installed: until then the source still holds that part (it only
        releases its stash afterwards).
        """
        with self.lock(instance_uuid, shared=True):
            new = self._tail_of(chain, max_bytes, history=False)
        older = self._source_part(peer, instance_uuid, max_bytes)
        now = self.record(instance_uuid).load()
        if now is None or now.get('state') != record.get('state'):
            raise _StateChanged()
        return self._join([older, new], max_bytes)

    def _tail_of(self, chain, max_bytes, history=True):
        try:
            found = chain.describe(self.host, chain.instance,
                                   tail_bytes=max_bytes)
        except exception.InstanceDirNotFound:
            return b''
        except exception.ConsoleLogError as e:
            raise _StateChanged() from e
        if not history:
            found.files = [f for f in found.files
                           if f.kind != cl_fields.FileKind.HISTORY]
        return found.merged_tail(max_bytes)

    def _source_part(self, peer, instance_uuid, max_bytes):
        """What the source holds: its stashes, else its live chain.

        Two calls, not atomic: a stash made between them empties the live
        chain, so an empty answer is asked again once.
        """
        for _ in range(2):
            sets = self.rpcapi.list_stashes({}, peer, instance_uuid,
                                            tail_bytes=max_bytes)
            if sets:
                return b''.join(s.merged_tail(max_bytes) for s in sets)
            try:
                live = self.rpcapi.describe({}, peer, instance_uuid,
                                            tail_bytes=max_bytes)
            except exception.InstanceDirNotFound:
                continue
            if live.files:
                return live.merged_tail(max_bytes)
        return b''

    def _source_tail(self, instance_uuid, chain, peer, max_bytes,
                     last_attempt):
        """Source during a hand-over: our part + the destination's new one.

        While we hold the older part (a stash, or the live chain before the
        stash is made) the destination's history would repeat it: only its
        virtlogd files count then. Once our stash is released, the
        destination's history holds our part.
        """
        try:
            remote = self.rpcapi.describe({}, peer, instance_uuid,
                                          tail_bytes=max_bytes)
        except exception.InstanceDirNotFound:
            # The destination has not made the instance directory yet.
            remote = objects.ConsoleLogSet(files=[])
        history = [f for f in remote.files
                   if f.kind == cl_fields.FileKind.HISTORY]
        full = remote.merged_tail(max_bytes)
        remote.files = [f for f in remote.files
                        if f.kind != cl_fields.FileKind.HISTORY]
        new = remote.merged_tail(max_bytes)
        with self.lock(instance_uuid, shared=True):
            try:
                older = [s.chain.read_tail(max_bytes)
                         for s in self.stashes(instance_uuid)]
            except exception.ConsoleLogError as e:
                raise _StateChanged() from e
            if not older:
                older = [self._tail_of(chain, max_bytes)]
        if any(older):
            return self._join(older + [new], max_bytes)
        if history or last_attempt:
            return full
        # Our stash went between the two reads: the destination has its
        # history by now.
        raise _StateChanged()

    # -- housekeeping ----------------------------------------------------

    def has_stash(self, instance_uuid):
        """True while this host still holds console log for the instance."""
        return bool(self.stashes(instance_uuid))

    def _forget_finished_source(self, rec, data):
        """Drop a source record once its stashes are gone or it is stale."""
        age = time.time() - data.get('created', 0)
        if data.get('state') == 'stashed' and not self.has_stash(
                rec.instance_uuid):
            rec.remove()
        elif age > self.conf.consolelog.stash_expiry:
            rec.remove()

    def retry_pending(self):
        """Periodic: finish owed imports, expire old stashes.

        Returns the uuids whose import completed in this run.
        """
        done = []
        if not self.enabled:
            return done
        for rec in HandoverRecord.all(self.records_dir):
            data = rec.load()
            if not data:
                continue
            if data.get('role') not in (ROLE_SOURCE, ROLE_DESTINATION) or \
                    not isinstance(data.get('peer'), str):
                LOG.warning('Removing console-log hand-over record %s: it '
                            'names no role or peer', rec.path)
                rec.remove()
                continue
            if data.get('role') == ROLE_SOURCE:
                self._forget_finished_source(rec, data)
                continue
            if data.get('state') not in ('pulling', STATE_INSTALLED):
                # An import installed but not released (a crash, a source
                # away) is pulled again: the ledger finds it installed and
                # only the release is sent.
                continue
            if time.time() - data.get('created', 0) > \
                    self.conf.consolelog.stash_expiry:
                # The source has expired its stash by now.
                LOG.warning('Giving up the console-log import of instance '
                            '%s from %s after %ss: its earlier console '
                            'output is not migrated', rec.instance_uuid,
                            data.get('peer'),
                            self.conf.consolelog.stash_expiry)
                rec.remove()
                continue
            try:
                if self._import(rec.instance_uuid, data['peer'],
                                data.get('shared', False)):
                    done.append(rec.instance_uuid)
            except Exception as e:
                LOG.warning('Retry of the console-log import of instance %s '
                            'from %s failed; will retry: %s',
                            rec.instance_uuid, data.get('peer'), e)
        try:
            cl_stash.expire(self.conf.consolelog.stash_expiry,
                            root=self.stash_root, conf=self.conf)
            cl_stash.expire(2 * self.conf.consolelog.pull_timeout,
                            root=cl_stash.pin_root(self.stash_root),
                            conf=self.conf)
        except Exception as e:
            LOG.warning('Expiring console-log stashes failed: %s', e)
        self._remove_abandoned_imports()
        return done

    def _remove_abandoned_imports(self):
        """Staging files of pulls nobody resumed within ``stash_expiry``.

        A pull from a source that never comes back (or came back under
        another name) leaves its staging file; the source's stash is gone
        after ``stash_expiry`` anyway, so nothing could resume it.
        """
        try:
            names = os.listdir(self.instances_path)
        except OSError:
            return
        for name in names:
            if not uuidutils.is_uuid_like(name):
                continue
            directory = os.path.join(self.instances_path, name)
            if not fileutils.is_real_dir(directory):
                continue
            try:
                self.chain(name).remove_partials(
                    self.conf.consolelog.stash_expiry)
            except Exception as e:
                LOG.debug('Abandoned imports of %s not checked: %s', name, e)
