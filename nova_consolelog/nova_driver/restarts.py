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

"""The driver's hooks at every new QEMU on the same host, and a rebuild.

nova starts a new QEMU at a hard or soft reboot, a power on, a resume, a
rescue and unrescue, a cold snapshot, the finish and revert of a cold
migration and a host's boot; virtlogd's ``append="off"`` unlinks the chain
at each. A rebuild deletes the instance directory. These hooks keep the
console output (``handover.restarts``).
"""

from nova.compute import task_states


class NewQemuHooks:
    """Mixin of ``LibvirtDriver``: history kept at every QEMU start."""

    def _keep_console(self, instance):
        """Before a new QEMU starts on this host; see before_qemu_start.

        At the revert of a resize the held stash goes back into the
        instance directory first, so that this start keeps it as history.
        """
        if self._cl_enabled():
            if instance.uuid in self._reverting:
                self.consolelog.cold_migration_reverted(instance.uuid)
            self.consolelog.before_qemu_start(instance.uuid)

    def _create_guest(self, context, xml, instance, power_on=True,
                      pause=False, post_xml_callback=None):
        # Every QEMU start of nova's driver but two comes through here:
        # spawn, hard reboot, power on, resume, rescue, unrescue, the
        # finish and revert of a cold migration, a host's boot.
        if power_on or pause:
            self._keep_console(instance)
        # This host runs the instance again: its domain is no leftover.
        self._forget_left_defined(instance.uuid)
        return super()._create_guest(
            context, xml, instance, power_on=power_on, pause=pause,
            post_xml_callback=post_xml_callback)

    def _soft_reboot(self, instance):
        # nova's soft reboot is a shutdown and a new QEMU (guest.launch).
        self._keep_console(instance)
        return super()._soft_reboot(instance)

    def _resume_guest_after_snapshot(self, context, live_snapshot,
                                     original_power_state, instance, guest):
        # A cold snapshot starts the guest again with guest.launch.
        if self._needs_suspend_resume_for_snapshot(live_snapshot,
                                                   original_power_state):
            self._keep_console(instance)
        return super()._resume_guest_after_snapshot(
            context, live_snapshot, original_power_state, instance, guest)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        # nova's rebuild (ComputeManager._rebuild_default_impl) is destroy
        # with destroy_disks=True, which deletes the instance directory,
        # console.log and our history included, then spawn on this host:
        # keep the chain outside the directory meanwhile.
        stash_id = None
        if (self._cl_enabled() and
                instance.task_state == task_states.RESIZE_REVERTING):
            # A resize destination's destroy at a revert: the source takes
            # its held stash back, no pull is owed any more.
            self.consolelog.cold_migration_abandoned(instance.uuid)
        if destroy_disks and self._rebuilding_here(instance):
            stash_id = self.consolelog.before_instance_dir_removed(
                instance.uuid)
        try:
            return super().destroy(
                context, instance, network_info,
                block_device_info=block_device_info,
                destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        finally:
            if stash_id is not None:
                self.consolelog.after_instance_dir_removed(instance.uuid,
                                                           stash_id)

    def _rebuilding_here(self, instance):
        """A rebuild that spawns the instance on this host again.

        Not an evacuation's: its destination never destroys, and the old
        host destroys what nova's database places elsewhere.
        """
        return (self._cl_enabled() and
                instance.task_state == task_states.REBUILDING and
                instance.host == self.consolelog.host)
