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

"""A cold migration's or resize's hand-over.

nova's ``migrate_disk_and_power_off`` renames the source's instance
directory to ``<dir>_resize`` and copies only the disks; the destination's
QEMU starts on a directory without console output; a confirm deletes
``<dir>_resize``, console.log included; a revert renames it back and starts
the guest on the source again. So the source stashes the chain at once,
*held* until the confirm: the destination installs it without deleting it
(a revert still needs it, and the destination's copy goes with nova's
destroy there).
"""

import os

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import fileutils
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)


class ColdMigrationSteps:
    """The cold-migration and resize steps of one host."""

    def __init__(self, host, importer):
        self.host = host
        self.importer = importer

    def resize_dir(self, instance_uuid):
        """Where nova keeps the source's instance directory until confirm."""
        return self.host.chain(instance_uuid).directory + '_resize'

    def started(self, instance_uuid, dest_host, resize_dir=None):
        """Source, after nova powered off and renamed the directory.

        The guest is off, so the stash gets hash lists (no live names);
        ``dest_host`` (nova's host name of the destination, None if
        unknown) is the only host granted a pull. Zero copy: a rename on
        the instances filesystem.

        :returns: the stash id, or None when there was nothing to keep.
        """
        host = self.host
        directory = resize_dir or self.resize_dir(instance_uuid)
        chain = cl_chain.ConsoleLogChain(directory, instance=instance_uuid,
                                         conf=host.conf)
        with host.lock(instance_uuid):
            if not fileutils.is_real_dir(directory) or not chain.scan():
                return None
            stash = host.make_stash(instance_uuid, chain,
                                    destination=dest_host,
                                    hold=cl_stash.HOLD_CONFIRM)
        LOG.info('Stashed the console log of instance %s (%s) for %s until '
                 'the resize is confirmed', instance_uuid, stash.stash_id,
                 dest_host)
        return stash.stash_id

    def finishing(self, instance_uuid, source_host):
        """Destination, before nova starts the guest here.

        From that start until the install, console reads here take the
        older part from the source (the hand-over record names it), as
        during a live migration. Nothing is written for a stash this host
        sees itself: reads find it.
        """
        host = self.host
        if source_host is None or source_host == host.host or any(
                s.destination in (None, host.host)
                for s in host.held_stashes(instance_uuid)):
            return
        host.record(instance_uuid).save(
            role=Role.DESTINATION, peer=source_host, shared=False,
            state=State.MIGRATING, hold=True)

    def finished(self, instance_uuid, source_host):
        """Destination, after nova started the guest here: install.

        A stash this host sees (same-host resize, or a shared stash root)
        is copied in locally; otherwise it is pulled from ``source_host``
        with the hand-over record written first, so that ``retry_pending``
        finishes a failed pull. Either way the source's stash stays until
        the confirm (``Stash.settle_install``).
        """
        host = self.host
        local = [s for s in host.held_stashes(instance_uuid)
                 if s.destination in (None, host.host)]
        if local:
            chain = host.chain(instance_uuid)
            with host.lock(instance_uuid):
                os.makedirs(chain.directory, exist_ok=True)
                for stash in host.held_stashes(instance_uuid):
                    if stash.destination not in (None, host.host) or \
                            stash.installed_by is not None:
                        continue
                    name = stash.install_as_history(chain, release=False)
                    stash.settle_install(host.host)
                    LOG.info('Installed console-log stash %s of instance %s '
                             'as %s; kept until the resize is confirmed',
                             stash.stash_id, instance_uuid, name)
            return True
        if source_host is None or source_host == host.host:
            return False
        host.record(instance_uuid).update(
            role=Role.DESTINATION, peer=source_host, shared=False,
            state=State.PULLING, hold=True)
        return self.importer.run(instance_uuid, source_host, False)

    def confirmed(self, instance_uuid):
        """Source, after nova deleted ``<dir>_resize``: drop what is held.

        A stash its destination installed goes now; one not installed yet
        is marked confirmed and goes with the destination's release (or
        after ``stash_expiry``).
        """
        host = self.host
        with host.lock(instance_uuid):
            for stash in host.held_stashes(instance_uuid):
                if stash.settle_confirm():
                    LOG.info('Released console-log stash %s of instance %s '
                             'at the confirm of its resize', stash.stash_id,
                             instance_uuid)
                else:
                    LOG.info('Console-log stash %s of instance %s is kept '
                             'until %s has installed it', stash.stash_id,
                             instance_uuid, stash.destination)

    def reverted(self, instance_uuid):
        """Source, the directory renamed back, before the guest starts.

        The held stash moves back into the instance directory (rename);
        the QEMU start that follows turns it into history like any other
        chain. Returns the number of stashes restored.
        """
        host = self.host
        with host.lock(instance_uuid):
            held = host.held_stashes(instance_uuid)
            if held:
                chain = host.chain(instance_uuid)
                os.makedirs(chain.directory, exist_ok=True)
                for stash in held:
                    host.restore(chain, stash)
                    LOG.info('Restored console-log stash %s of instance %s '
                             'at the revert of its resize', stash.stash_id,
                             instance_uuid)
        return len(held)

    def abandoned(self, instance_uuid):
        """Destination, the resize reverted: no import is owed any more.

        The source takes its held stash back; nova destroys this host's
        copy of the instance, installed history included.
        """
        record = self.host.record(instance_uuid)
        data = record.load()
        if data is not None and data.get('hold'):
            record.remove()
