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

"""The driver's hooks in a shelve offload and an unshelve.

nova's shelve offload (``ComputeManager._shelve_offload_instance``, task
state ``SHELVING_OFFLOADING``, by the API, by ``shelved_offload_time`` 0
or by the periodic offload) powers the guest off and calls ``destroy``,
which deletes the instance directory: the chain is stashed first. The
unshelve of an offloaded instance (``_unshelve_instance``) is a ``spawn``
on the scheduled host while the system metadata still names
``shelved_host`` (nova drops it only after the spawn): the history is
installed from there once the spawn succeeded. See ``handover.shelve``.
"""

import threading

from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class ShelveHooks:
    """Mixin of ``LibvirtDriver``: a shelved instance's console log."""

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        stash_id = None
        if self._cl_enabled() and \
                instance.task_state == task_states.SHELVING_OFFLOADING:
            stash_id = self.consolelog.shelve_offloading(instance.uuid)
        try:
            return super().destroy(
                context, instance, network_info,
                block_device_info=block_device_info,
                destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        except Exception:
            if stash_id is not None:
                self.consolelog.shelve_offload_failed(instance.uuid,
                                                      stash_id)
            raise

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        shelved_host = None
        if self._cl_enabled() and \
                instance.vm_state == vm_states.SHELVED_OFFLOADED:
            shelved_host = (instance.system_metadata or {}).get(
                'shelved_host')
            self.consolelog.unshelving(instance.uuid, shelved_host)
        try:
            result = super().spawn(
                context, instance, image_meta, injected_files,
                admin_password, allocations, network_info=network_info,
                block_device_info=block_device_info, power_on=power_on,
                accel_info=accel_info)
        except Exception:
            if self._cl_enabled() and \
                    instance.vm_state == vm_states.SHELVED_OFFLOADED:
                # The history stays on the shelved host for the next try.
                self.consolelog.shelve_spawn_failed(instance.uuid)
            raise
        if self._cl_enabled() and \
                instance.vm_state == vm_states.SHELVED_OFFLOADED:
            peer = self.consolelog.unshelved(instance.uuid, shelved_host)
            if isinstance(peer, str):
                self._unshelve_pull(instance.uuid, peer)
        return result

    def _unshelve_pull(self, instance_uuid, peer):
        """Pull from the shelved host without holding the unshelve up.

        The shelved host may be long gone: a pull from it would wait
        ``rpc_timeout`` per call. The record says ``PULLING`` already, so
        a pull that fails here is retried by the periodic task.
        """
        thread = threading.Thread(
            target=self.consolelog.unshelve_pull, args=(instance_uuid, peer),
            name='consolelog-unshelve-%s' % instance_uuid, daemon=True)
        thread.start()
        return thread

    def consolelog_forget_deleted(self):
        """Periodic: stashes of shelved instances deleted meanwhile go.

        nova deletes a shelved offloaded instance without any compute host
        (``compute.api``'s local delete), so no hook here sees it.
        """
        if not self._cl_enabled():
            return []
        return self.consolelog.forget_deleted(self._instance_deleted)

    @staticmethod
    def _instance_deleted(instance_uuid):
        """True when nova's database says the instance is deleted."""
        ctxt = nova_context.get_admin_context(read_deleted='yes')
        try:
            return bool(objects.Instance.get_by_uuid(
                ctxt, instance_uuid, expected_attrs=[]).deleted)
        except nova_exception.InstanceNotFound:
            # Archived, or in another cell: leave it to stash_expiry.
            return False
