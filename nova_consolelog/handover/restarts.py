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

"""Console output kept on one host across a new QEMU and a rebuild.

Not a hand-over between hosts, but the same machinery: virtlogd's
``append="off"`` unlinks the chain at every QEMU start, so it becomes
history first; nova's rebuild deletes the instance directory, so the chain
waits in a stash meanwhile.
"""

import os

from oslo_log import log as logging

from nova_consolelog import fileutils
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State
from nova_consolelog import history_import
from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)


class SameHostSteps:
    """Steps for a new QEMU and a rebuild on this host."""

    def __init__(self, host):
        self.host = host

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

        While an import into this host is still owed (after a migration or
        an evacuation here) the imported part is older than anything here
        and must come first: the first such start reserves its place, a
        zero-length history file named in the record
        (``history_import.reserve_slot``), and the chain goes into the
        numbers behind it; the import fills the slot later. Over a shared
        instance path (the import is a local copy, moments later) the
        start is skipped with a warning, as before.

        :returns: the history names given, or None.
        """
        host = self.host
        chain = host.chain(instance_uuid)
        handle = host.record(instance_uuid)
        with host.lock(instance_uuid):
            record = handle.adopt_orphan(handle.load())
        if record is not None and record.get('hold') and \
                State.of(record) == State.MIGRATING:
            # A resize's destination: the chain here is new, the source's
            # comes in after this start (cold_migration_finished).
            return None
        if self._owed(record) and record.get('shared'):
            LOG.warning('Instance %s restarts while its console log is '
                        'still being handed over from %s; the output since '
                        'the migration is not kept', instance_uuid,
                        record.get('peer'))
            return None
        with host.lock(instance_uuid):
            self._reserve_if_owed(instance_uuid, chain)
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

    @staticmethod
    def _owed(record):
        """An import into this host is owed and not installed yet."""
        return (record is not None and
                record.get('role') == Role.DESTINATION and
                State.of(record) != State.INSTALLED)

    def _reserve_if_owed(self, instance_uuid, chain):
        """Reserve the owed import's history slot; under the lock.

        Kept if one is reserved already (a second restart). A crash
        between the slot and the record leaves an empty history file,
        which reads as nothing; the next start reserves again. The
        instance directory is made if missing (nova's spawn made it
        already; the QEMU starting now logs into it).
        """
        rec = self.host.record(instance_uuid)
        record = rec.load()
        if not self._owed(record) or record.get('shared'):
            return None
        os.makedirs(chain.directory, exist_ok=True)
        if history_import.is_placeholder(chain, record.get('reserved')):
            return record['reserved']
        slot = history_import.reserve_slot(chain)
        rec.update(create=False, reserved=slot)
        LOG.info('Reserved console-log history slot %s of instance %s for '
                 'the output still owed by %s', slot, instance_uuid,
                 record.get('peer'))
        return slot

    def before_instance_dir_removed(self, instance_uuid):
        """Same host, the instance stays: nova deletes its directory now.

        A rebuild is nova's ``destroy`` (``destroy_disks=True``: the whole
        instance directory goes, ``console.log`` and our history with it)
        and then ``spawn`` on the same host. The chain moves into a stash
        outside the directory (rename, zero copy) until
        ``after_instance_dir_removed`` puts it back.

        :returns: the stash id, or None when there was nothing to keep.
        """
        host = self.host
        stash = host.stash_chain(
            instance_uuid, live_names=(host.conf.consolelog.log_name,))
        if stash is None:
            return None
        LOG.info('Moved the console log of instance %s to stash %s before '
                 'its instance directory is deleted', instance_uuid,
                 stash.stash_id)
        return stash.stash_id

    def after_instance_dir_removed(self, instance_uuid, stash_id):
        """Put the chain kept by ``before_instance_dir_removed`` back.

        Into a new instance directory (nova's spawn creates it if missing
        and keeps what is there); the next QEMU start turns it into
        history as at any other start.
        """
        host = self.host
        with host.lock(instance_uuid):
            for stash in host.stashes(instance_uuid):
                if stash.stash_id == stash_id:
                    chain = host.chain(instance_uuid)
                    os.makedirs(chain.directory, exist_ok=True)
                    host.restore(chain, stash)
                    return True
        LOG.warning('Stash %s of instance %s is gone; its console output '
                    'before the rebuild is not kept', stash_id,
                    instance_uuid)
        return False
