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

"""The driver's hooks in a cold migration and a resize.

``migrate_disk_and_power_off`` (source) stashes the chain nova left in
``<dir>_resize``, held until the confirm; ``finish_migration``
(destination) installs it as history after nova's start;
``confirm_migration`` drops the held stash; ``finish_revert_migration``
moves it back before the source's guest starts again (``_keep_console``).
See ``handover.cold``.
"""

from oslo_log import log as logging

from nova_consolelog.nova_driver import migration_record

LOG = logging.getLogger(__name__)


class ColdMigrationHooks:
    """Mixin of ``LibvirtDriver``: a resize's console log, held."""

    def migrate_disk_and_power_off(self, context, instance, dest,
                                   flavor, network_info,
                                   block_device_info=None,
                                   timeout=0, retry_interval=0):
        # nova powered the guest off, renamed the instance directory to
        # <dir>_resize (a confirm deletes it, console.log included) and
        # copied only the disks: stash the chain, held until the confirm.
        result = super().migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info,
            block_device_info=block_device_info, timeout=timeout,
            retry_interval=retry_interval)
        if self._cl_enabled():
            self.consolelog.cold_migration_started(
                instance.uuid, self._resize_dest(context, instance))
        return result

    @staticmethod
    def _resize_dest(context, instance):
        """The destination's compute host name (``dest`` is its address).

        None when nova's database does not say: the stash is then granted
        to whichever host asks.
        """
        return migration_record.migration_host(
            context, instance, 'dest_compute', LOG,
            'Destination of the resize unknown (%s); its console-log stash '
            'is not bound to one host')

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        # nova's QEMU start here finds no chain (only disks were copied):
        # install the source's as history after it, its stash kept for a
        # revert; until then reads here take that part from the source.
        if self._cl_enabled():
            self.consolelog.cold_migration_finishing(
                instance.uuid, migration.source_compute)
        try:
            super().finish_migration(
                context, migration, instance, disk_info, network_info,
                image_meta, resize_instance, allocations,
                block_device_info=block_device_info, power_on=power_on,
                share_info=share_info)
        finally:
            # Also after a failed start: the instance lives here now (nova
            # set instance.host), and a later start keeps the history.
            if self._cl_enabled():
                self.consolelog.cold_migration_finished(
                    instance.uuid, migration.source_compute)

    def confirm_migration(self, context, migration, instance, network_info):
        super().confirm_migration(context, migration, instance,
                                  network_info)
        if self._cl_enabled():
            self.consolelog.cold_migration_confirmed(instance.uuid)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        # nova renames <dir>_resize back and starts the guest through
        # _create_guest, where _keep_console restores the held stash
        # before the start; a revert without a start (a stopped guest)
        # restores it afterwards. A failed revert keeps it for the retry.
        self._reverting.add(instance.uuid)
        try:
            super().finish_revert_migration(
                context, instance, network_info, migration,
                block_device_info=block_device_info, power_on=power_on,
                share_info=share_info)
        finally:
            self._reverting.discard(instance.uuid)
        if self._cl_enabled():
            self.consolelog.cold_migration_reverted(instance.uuid)
