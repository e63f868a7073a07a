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

"""A live migration's hand-over, step by step.

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
  import, the console output is split between two hosts: each host keeps a
  hand-over record naming its peer (see ``record``) for the merged reads.
"""

import os

from oslo_log import log as logging

from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State

LOG = logging.getLogger(__name__)


class LiveMigrationSteps:
    """The live-migration steps of one host, source and destination.

    :param wait_for_shutoff: callable ``(domain, timeout) -> bool`` used by
        the source step; defaults to :func:`virt.wait_for_shutoff`.
    """

    def __init__(self, host, catchers, importer, wait_for_shutoff=None):
        self.host = host
        self.catchers = catchers
        self.importer = importer
        self.wait_for_shutoff = wait_for_shutoff

    def _wait(self, domain):
        timeout = self.host.conf.consolelog.shutoff_timeout
        if self.wait_for_shutoff is not None:
            return self.wait_for_shutoff(domain, timeout)
        from nova_consolelog import virt
        return virt.wait_for_shutoff(domain.connect(), domain, timeout)

    def started(self, instance_uuid, dest_host, shared_instance_path):
        """Source: note the destination before the guest moves."""
        self.host.record(instance_uuid).save(
            role=Role.SOURCE, peer=dest_host,
            shared=bool(shared_instance_path), state=State.MIGRATING)

    def before_incoming_qemu(self, instance_uuid, source_host,
                             shared_instance_path):
        """Destination, before the incoming QEMU starts.

        On a shared instance path the chain in the instance directory is the
        source's, and virtlogd is about to unlink it when the destination's
        QEMU starts: move it into a stash now (rename, no copy).
        """
        host = self.host
        stash_ids = []
        if shared_instance_path:
            chain = host.chain(instance_uuid)
            self.catchers.start(instance_uuid, chain)
            with host.lock(instance_uuid):
                stash = None
                if os.path.isdir(chain.directory) and chain.scan():
                    stash = host.make_stash(
                        instance_uuid, chain,
                        live_names=(host.conf.consolelog.log_name,))
            if stash is not None:
                stash_ids.append(stash.stash_id)
                LOG.info('Moved the console log of instance %s aside to '
                         'stash %s before the incoming QEMU starts',
                         instance_uuid, stash.stash_id)
        host.record(instance_uuid).save(
            role=Role.DESTINATION, peer=source_host,
            shared=bool(shared_instance_path), stash_ids=stash_ids,
            state=State.MIGRATING)

    def stash_at_source(self, instance_uuid, dest_host,
                        shared_instance_path, domain=None):
        """Source, after the guest runs on the destination, before cleanup.

        Waits for the migrated domain to shut off (so QEMU has written its
        last byte), then moves the chain into a stash outside the instance
        directory, where nova's cleanup cannot delete it.
        """
        host = self.host
        record = host.record(instance_uuid)
        # A restarted nova-compute forgets the destination its driver saw
        # in live_migration(); the record from ``started`` has it.
        dest_host = dest_host or (record.load() or {}).get('peer')
        if domain is not None and not self._wait(domain):
            LOG.warning('The migrated domain of instance %s did not shut '
                        'off within %ss; its console log is stashed anyway, '
                        'but output written after now will not be migrated',
                        instance_uuid, host.conf.consolelog.shutoff_timeout)
        if shared_instance_path:
            # The destination moved the chain aside in pre_live_migration
            # and installs it from the shared stash; nothing is left here.
            record.remove()
            return
        chain = host.chain(instance_uuid)
        with host.lock(instance_uuid):
            if not os.path.isdir(chain.directory) or not chain.scan():
                record.remove()
                return
            stash = host.make_stash(instance_uuid, chain,
                                    destination=dest_host)
            record.save(role=Role.SOURCE, peer=dest_host, shared=False,
                        state=State.STASHED, stash_ids=[stash.stash_id])
        LOG.info('Stashed the console log of instance %s (%s) for %s',
                 instance_uuid, stash.stash_id, dest_host)

    def import_at_destination(self, instance_uuid, source_host,
                              shared_instance_path=None):
        """Destination: bring the source's console log in as history.

        ``shared_instance_path`` None: as the record written before the
        incoming QEMU started says. The record is marked first, so that a
        failure anywhere below leaves an import that ``retry_pending``
        finishes later.
        """
        record = self.host.record(instance_uuid)
        if shared_instance_path is None:
            shared_instance_path = bool((record.load() or {}).get('shared'))
        record.update(role=Role.DESTINATION, peer=source_host,
                      shared=bool(shared_instance_path), state=State.PULLING)
        self.importer.run(instance_uuid, source_host, shared_instance_path)

    def rollback_at_source(self, instance_uuid):
        """Source: the migration failed; put any stash back in place."""
        host = self.host
        with host.lock(instance_uuid):
            host.restore_stashes(instance_uuid)
        host.record(instance_uuid).remove()

    def rollback_at_destination(self, instance_uuid, source_host,
                                shared_instance_path):
        """Destination: the migration failed; give the chain back.

        Only a shared instance path has anything here: the chain moved aside
        in ``pre_live_migration`` goes back into the instance directory,
        which the source's QEMU has kept writing to all along.
        """
        host = self.host
        if shared_instance_path:
            with host.lock(instance_uuid):
                host.restore_stashes(instance_uuid)
                self.catchers.adopt(instance_uuid, host.chain(instance_uuid))
        host.record(instance_uuid).remove()
