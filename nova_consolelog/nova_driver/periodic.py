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

"""The driver's periodic task: retries, expiry, the leftover-domain reaper.

It runs in a ``FixedIntervalLoopingCall`` started by ``init_host`` every
``[consolelog] reaper_interval`` seconds and stopped by ``cleanup_host``:
nova gives drivers no periodic-task hook of their own
(``manage_image_cache`` is tied to the image cache settings), and the
libvirt driver already uses looping calls for its own timed work.

The reaper only ever undefines domains this driver left defined: a marker
per instance under the stash root says which (it survives a restart of
nova-compute). Shut-off domains of any other origin — a resize source, a
stopped instance — are nova's business.
"""

import os

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging

from nova_consolelog import virt

LOG = logging.getLogger(__name__)


class PeriodicTask:
    """Mixin of ``LibvirtDriver``: the console-log periodic task."""

    def consolelog_periodic_task(self):
        """Retry owed pulls, expire stashes, undefine leftover domains.

        Returns the reaper's list of ``virt.Reaped``. Never raises.
        """
        if not self._cl_enabled():
            return []
        self.consolelog.retry_pending()
        try:
            conn = self._host.get_connection()
            reaper = virt.Reaper(
                conn, self.consolelog.host, self._instance_host,
                self._stash_age,
                stash_expiry=self.consolelog_conf.consolelog.stash_expiry)
            done = reaper.run()
            self._forget_markers(conn, done)
            return done
        except Exception:
            LOG.exception('Console-log reaper pass failed')
            return []

    def _forget_markers(self, conn, reaped):
        """Drop the markers of domains undefined now or gone meanwhile."""
        directory = os.path.dirname(self._left_defined_marker('x'))
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        undefined = {r.uuid for r in reaped if r.action == virt.UNDEFINED}
        for name in names:
            if name not in undefined:
                try:
                    conn.lookupByUUIDString(name)
                    continue
                except Exception:
                    # Not defined any more (nova deleted the instance
                    # here, or someone undefined it).
                    pass
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass

    def _instance_host(self, instance_uuid):
        """Where nova's database says the instance lives (None: unknown).

        None as well for a domain this driver did not leave defined, so
        that the reaper leaves it to nova. Deleted instances are included:
        their leftover domain goes once the instance was deleted on
        another host.
        """
        if not os.path.exists(self._left_defined_marker(instance_uuid)):
            return None
        ctxt = nova_context.get_admin_context(read_deleted='yes')
        try:
            return objects.Instance.get_by_uuid(ctxt, instance_uuid).host
        except nova_exception.InstanceNotFound:
            return None

    def _stash_age(self, instance_uuid):
        ages = [s.age() for s in self.consolelog.stashes(instance_uuid)]
        return max(ages) if ages else None
