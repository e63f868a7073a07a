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

"""A shelve offload and the unshelve: the history waits on the old host.

nova's shelve offload powers the guest off and calls the driver's
``destroy``, which deletes the instance directory, ``console.log`` and
history included; the instance then has no host until an unshelve spawns
it on whichever host the scheduler picks, with ``shelved_host`` (the host
it was shelved on) still in its system metadata until after the spawn.

No new storage: the offloading host stashes the chain (by rename, guest
off, so with hash lists) before the destroy, granted to whichever host
asks (the unshelving host is not known yet), not held. The unshelving
host installs it as history after a successful spawn: locally when it sees
the stash (the same host, or a shared stash root), otherwise pulled over
RPC from ``shelved_host``, verified and released, with the cold
migration's record shape so that a failed pull is retried by the periodic
task and a restart meanwhile is handled as after a resize. A stash nobody
collects expires after ``stash_expiry``: a longer shelve loses the
history from before it. One whose instance nova has deleted meanwhile (a
shelved offloaded instance is deleted without any compute host) goes at
the next periodic task (``forget_deleted``).
"""

from oslo_log import log as logging

from nova_consolelog import fileutils
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)


class ShelveSteps:
    """The shelve-offload and unshelve steps of one host."""

    def __init__(self, host, importer):
        self.host = host
        self.importer = importer

    def offloading(self, instance_uuid):
        """Offloading host, the guest off, before nova's destroy.

        The chain moves into a stash outside the instance directory
        (rename, zero copy) granted to any host: the unshelve may go
        anywhere. Returns the stash id, or None when there was nothing.
        """
        host = self.host
        chain = host.chain(instance_uuid)
        self._finish_owed_import(instance_uuid)
        with host.lock(instance_uuid):
            if not fileutils.is_real_dir(chain.directory) or \
                    not chain.scan():
                return None
            stash = host.make_stash(instance_uuid, chain, destination=None)
        LOG.info('Stashed the console log of instance %s (%s) for its '
                 'unshelve', instance_uuid, stash.stash_id)
        return stash.stash_id

    def _finish_owed_import(self, instance_uuid):
        """An import into this host still owed: finish it, or give it up.

        Its history must be in the chain before the chain is stashed: an
        import after the offload would recreate the instance directory
        nova deleted, where no unshelve ever looks. So it is tried once
        now (bounded by ``rpc_timeout`` per call); if it cannot finish,
        the record goes with a warning and the peer's stash expires there.
        """
        record = self.host.record(instance_uuid)
        data = record.load()
        if data is None or data.get('role') != Role.DESTINATION or \
                not isinstance(data.get('peer'), str):
            return
        try:
            if self.importer.run(instance_uuid, data['peer'],
                                 bool(data.get('shared'))):
                return
        except Exception as e:
            LOG.debug('Owed console-log import of instance %s failed at '
                      'its shelve offload: %s', instance_uuid, e)
        if record.load() is not None:
            LOG.warning('Instance %s is shelve offloaded before its console '
                        'log from %s was installed; that part stays there '
                        'until stash_expiry and is not brought back at the '
                        'unshelve', instance_uuid, data['peer'])
            record.remove()

    def offload_failed(self, instance_uuid, stash_id):
        """nova's destroy failed: the instance stays shelved here.

        With its directory still there, the stash moves back (a later
        unshelve of a shelved, not offloaded, instance is a power on here,
        whose QEMU start keeps it as history). Without one the stash stays
        for an unshelve to collect. Returns True when moved back.
        """
        host = self.host
        chain = host.chain(instance_uuid)
        with host.lock(instance_uuid):
            if not fileutils.is_real_dir(chain.directory):
                return False
            for stash in host.stashes(instance_uuid):
                if stash.stash_id == stash_id:
                    host.restore(chain, stash)
                    return True
        return False

    def _local(self, instance_uuid):
        return [s for s in self.host.stashes(instance_uuid)
                if s.destination in (None, self.host.host)]

    def unshelving(self, instance_uuid, shelved_host):
        """Unshelving host, before nova's spawn.

        When the history is on another host, the record names it first
        (the cold migration's shape: ``MIGRATING``, held), so that reads
        during the spawn merge that part and the spawn's QEMU start is not
        taken for a restart after an owed import.
        """
        host = self.host
        if not shelved_host or shelved_host == host.host or \
                self._local(instance_uuid):
            return False
        host.record(instance_uuid).save(
            role=Role.DESTINATION, peer=shelved_host, shared=False,
            state=State.MIGRATING, hold=True)
        return True

    def spawn_failed(self, instance_uuid):
        """nova's spawn failed: the instance is offloaded again.

        No import is owed here any more; the stash stays where it is for
        the next unshelve (or until ``stash_expiry``).
        """
        record = self.host.record(instance_uuid)
        data = record.load()
        if data is not None and data.get('hold') and \
                data.get('role') == Role.DESTINATION and \
                State.of(data) == State.MIGRATING:
            record.remove()

    def unshelved(self, instance_uuid, shelved_host):
        """Unshelving host, after a successful spawn: install locally.

        A stash this host sees is installed as history and released by the
        shared path's import, its record written first (``shared``,
        ``PULLING``): a crash between the install and the release is
        finished by the periodic task, whose retry finds the install in the
        ledger and only releases. Returns True when that import completed,
        the peer to pull from when a pull is owed (the record says
        ``PULLING`` now; ``pull`` or the periodic task does it), or None.
        """
        host = self.host
        if self._local(instance_uuid):
            host.record(instance_uuid).save(
                role=Role.DESTINATION, peer=shelved_host or host.host,
                shared=True, state=State.PULLING, hold=True)
            done = self.importer.run(instance_uuid, host.host, True)
            LOG.info('Installed the console log of instance %s kept since '
                     'its shelve offload', instance_uuid)
            return done
        if not shelved_host or shelved_host == host.host:
            return None
        host.record(instance_uuid).update(
            role=Role.DESTINATION, peer=shelved_host, shared=False,
            state=State.PULLING, hold=True)
        return shelved_host

    def pull(self, instance_uuid, shelved_host):
        """Pull what ``shelved_host`` holds; see ``importing.Importer``."""
        return self.importer.run(instance_uuid, shelved_host, False)

    def forget_deleted(self, is_deleted):
        """Release the stashes of deleted instances granted to any host.

        Such a stash waits for an unshelve (or a rebuild's spawn here); an
        instance nova deleted meanwhile never comes back for it, so it
        goes now rather than after ``stash_expiry``. ``is_deleted(uuid)``
        asks nova's database; an instance it cannot tell about keeps its
        stash. Returns ``[(instance_uuid, stash_id)]`` released.
        """
        host = self.host
        waiting = sorted({s.instance_uuid for s in cl_stash.Stash.list(
            root=host.stash_root, conf=host.conf) if self._waits(s)})
        released = []
        for instance_uuid in waiting:
            try:
                if not is_deleted(instance_uuid):
                    continue
            except Exception as e:
                LOG.debug('Whether instance %s is deleted is unknown: %s',
                          instance_uuid, e)
                continue
            with host.lock(instance_uuid):
                for stash in host.stashes(instance_uuid):
                    if self._waits(stash):
                        stash.release()
                        released.append((instance_uuid, stash.stash_id))
                        LOG.info('Released console-log stash %s of instance '
                                 '%s: the instance is deleted',
                                 stash.stash_id, instance_uuid)
        return released

    @staticmethod
    def _waits(stash):
        """A stash for any host, not a resize's: what a shelve leaves."""
        return stash.destination is None and not stash.held
