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

"""The driver's hooks in an evacuation, at both ends.

New host: nova's ``_do_rebuild_instance`` calls ``driver.rebuild(...,
evacuate=True)``; the libvirt driver has none (nova's
``_rebuild_default_impl`` then spawns here), so ``rebuild`` notes the
evacuation and raises NotImplementedError on, through nova's own method.

Old host, back: ``ComputeManager._destroy_evacuated_instances`` (in
``init_host``) calls ``destroy`` for a guest nova's database places
elsewhere, deleting the instance directory unless the path is shared:
the domain is stopped first (QEMU may still run if only nova-compute was
down) and the chain stashed for the instance's current host.

See ``handover.evacuation``.
"""

from nova.compute import task_states
from nova import objects
from oslo_log import log as logging

from nova_consolelog.nova_driver import migration_record

LOG = logging.getLogger(__name__)


class EvacuationHooks:
    """Mixin of ``LibvirtDriver``: an evacuation's console log."""

    def rebuild(self, context, instance, image_meta, injected_files,
                admin_password, allocations, bdms, detach_block_devices,
                attach_block_devices, network_info=None,
                evacuate=False, block_device_info=None,
                preserve_ephemeral=False, accel_uuids=None,
                reimage_boot_volume=False):
        # Before the spawn's QEMU start: on a non-shared path the older
        # output stays on the old host and its place is reserved now.
        if evacuate and self._cl_enabled():
            source = self._evacuation_source(context, instance)
            if source is not None:
                self.consolelog.evacuated_here(instance.uuid, source)
        return super().rebuild(
            context, instance, image_meta, injected_files, admin_password,
            allocations, bdms, detach_block_devices, attach_block_devices,
            network_info=network_info, evacuate=evacuate,
            block_device_info=block_device_info,
            preserve_ephemeral=preserve_ephemeral, accel_uuids=accel_uuids,
            reimage_boot_volume=reimage_boot_volume)

    @staticmethod
    def _evacuation_source(context, instance):
        """The host the guest was evacuated from (None: unknown)."""
        return migration_record.migration_host(
            context, instance, 'source_compute', LOG,
            'Evacuation source unknown (%s); the console output from before '
            'the evacuation is not collected')

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        if self._cl_enabled():
            if destroy_disks and self._evacuated_away(context, instance):
                # Stop the guest so that the chain is complete and
                # quiescent (nova's _destroy is idempotent; a failure here
                # is nova's destroy's to report), then stash it.
                try:
                    self._destroy(instance)
                except Exception as e:
                    LOG.warning('Stopping the evacuated guest before its '
                                'console log is stashed: %s', e,
                                instance=instance)
                self.consolelog.evacuated_away(instance.uuid, instance.host)
            elif (instance.task_state == task_states.DELETING and
                    instance.host == self.consolelog.host):
                self.consolelog.instance_deleted(instance.uuid)
        return super().destroy(
            context, instance, network_info,
            block_device_info=block_device_info,
            destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)

    def _evacuated_away(self, context, instance):
        """nova destroys here a guest evacuated from this host.

        nova's database places it on another host, and an evacuation from
        this host is recorded that nova has not finished cleaning up (the
        statuses nova's ``_destroy_evacuated_instances`` looks for; it
        completes the migration afterwards): a live migration's rollback
        at its destination, which also destroys a guest placed elsewhere,
        is not mistaken for one.
        """
        here = self.consolelog.host
        if not instance.host or instance.host == here or \
                instance.obj_attr_is_set('deleted') and instance.deleted:
            return False
        try:
            migrations = objects.MigrationList.get_by_filters(context, {
                'source_compute': here,
                'instance_uuid': instance.uuid,
                'migration_type': 'evacuation',
                'status': ['accepted', 'pre-migrating', 'done'],
            })
        except Exception as e:
            LOG.warning('Cannot tell whether the instance was evacuated '
                        'from this host (%s); its console log is not '
                        'stashed', e, instance=instance)
            return False
        return bool(migrations)
