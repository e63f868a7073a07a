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

"""``LibvirtDriver``: nova's libvirt driver with console-log migration.

This class sets console-log handling up for the host (``init_host``) and
tears it down (``cleanup_host``), keeps ``VIR_MIGRATE_UNDEFINE_SOURCE`` out
of the migration flags and serves console reads; the hooks into nova's
operations are its mixins, one module each (``live``, ``cold``,
``restarts``, ``periodic``).
"""

import threading

from nova import rpc as nova_rpc
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import loopingcall

from nova_consolelog import conf as cl_conf
from nova_consolelog.nova_driver import cold
from nova_consolelog.nova_driver import live
from nova_consolelog.nova_driver import periodic
from nova_consolelog.nova_driver import restarts
from nova_consolelog import virt

LOG = logging.getLogger(__name__)

CONF = cl_conf.CONF

# Polling interval while waiting for the migrated source domain to stop.
# nova's Host owns the connection's lifecycle-event callbacks, so we poll
# instead of registering our own; after a completed migration job the
# domain is normally stopped already at the first look.
SHUTOFF_POLL_INTERVAL = 0.2


def private_conf(instances_path):
    """Our options, copied from nova's CONF, on a ConfigOpts of their own.

    ``[consolelog] instances_path`` is replaced by nova's instances path of
    this driver, so that the RPC endpoint, the stash and the steps all use
    the directory nova writes console logs to. One ConfigOpts per driver
    also lets two drivers in one process (nova's functional tests) keep
    separate directories.
    """
    conf = cfg.ConfigOpts()
    cl_conf.register_opts(conf)
    conf([], project='nova', default_config_files=[],
         default_config_dirs=[])
    for opt in cl_conf.ALL_CONSOLELOG_OPTS:
        conf.set_override(opt.dest, CONF[cl_conf.GROUP][opt.dest],
                          group=cl_conf.GROUP)
    for opt in cl_conf.upgrade_opts:
        conf.set_override(opt.dest, CONF.upgrade_levels[opt.dest],
                          group='upgrade_levels')
    conf.set_override('instances_path', instances_path, group=cl_conf.GROUP)
    return conf


class LibvirtDriver(live.LiveMigrationHooks, cold.ColdMigrationHooks,
                    restarts.NewQemuHooks, periodic.PeriodicTask,
                    libvirt_driver.LibvirtDriver):
    """nova's libvirt driver that keeps console logs across live migration.

    ``consolelog`` is the ``ConsoleLogMigration`` of this host once
    ``init_host`` has run (None before, or when it could not be set up:
    then the driver behaves like nova's).
    """

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        cl_conf.register_opts(CONF)
        # nova's instances path as this driver was created; nova reads it
        # from CONF each time, but it cannot change while nova runs.
        self.instances_path = CONF.instances_path
        self.consolelog_conf = private_conf(self.instances_path)
        self.consolelog = None
        self._consolelog_server = None
        self._consolelog_timer = None
        self._migration_dest = {}
        self._keep_defined = threading.local()
        # Instances whose resize this host is reverting now (see
        # finish_revert_migration).
        self._reverting = set()

    # -- start and stop --------------------------------------------------

    def init_host(self, host):
        super().init_host(host)
        try:
            self._start_consolelog(host)
        except Exception:
            LOG.exception('Console-log migration is not available on host '
                          '%s; live migrations go on without it.', host)

    def _start_consolelog(self, host):
        # Imported here: the steps and the RPC layer are only needed once
        # nova runs, and a failure to load them must not stop nova-compute.
        from nova_consolelog import migration as cl_migration
        from nova_consolelog.rpc import api as cl_api
        from nova_consolelog.rpc import server as cl_server

        conf = self.consolelog_conf
        rpcapi = cl_api.ConsoleLogAPI(conf, transport=nova_rpc.TRANSPORT)
        self.consolelog = cl_migration.ConsoleLogMigration(
            conf, host, rpcapi, instances_path=self.instances_path,
            wait_for_shutoff=self._wait_for_shutoff)
        server = cl_server.ConsoleLogServer(
            conf, host, transport=nova_rpc.TRANSPORT)
        server.start()
        self._consolelog_server = server
        interval = conf.consolelog.reaper_interval
        if interval:
            timer = loopingcall.FixedIntervalLoopingCall(
                self.consolelog_periodic_task)
            timer.start(interval=interval, initial_delay=interval,
                        stop_on_exception=False)
            self._consolelog_timer = timer

    def cleanup_host(self, host):
        if self._consolelog_timer is not None:
            self._consolelog_timer.stop()
            self._consolelog_timer = None
        if self._consolelog_server is not None:
            try:
                self._consolelog_server.stop()
            except Exception as e:
                LOG.warning('Stopping the console-log RPC endpoint: %s', e)
            self._consolelog_server = None
        super().cleanup_host(host)

    # -- migration flags -------------------------------------------------

    def _prepare_migration_flags(self):
        """nova's flags without ``VIR_MIGRATE_UNDEFINE_SOURCE``.

        The migrated source domain stays defined and shut off, still naming
        its console log; the reaper undefines it later.
        """
        live, block = super()._prepare_migration_flags()
        enabled = self.consolelog_conf.consolelog.enabled
        return (virt.migration_flags(live, enabled),
                virt.migration_flags(block, enabled))

    def _cl_enabled(self):
        """Console-log handling is set up here and not switched off.

        ``[consolelog] enabled`` as this driver's own configuration says
        (copied from nova's when the driver was made, see
        ``private_conf``), never nova's global CONF.
        """
        return (self.consolelog is not None and
                self.consolelog_conf.consolelog.enabled)

    def _consolelog_active(self, migrate_data):
        """True when our steps should run for this migration."""
        if not self._cl_enabled():
            return False
        block = bool(migrate_data and migrate_data.obj_attr_is_set(
            'block_migration') and migrate_data.block_migration)
        flags = (self._block_migration_flags if block
                 else self._live_migration_flags)
        return virt.check_flags(flags)

    @staticmethod
    def _shared_path(migrate_data):
        return bool(migrate_data is not None and migrate_data.obj_attr_is_set(
            'is_shared_instance_path') and
            migrate_data.is_shared_instance_path)

    def _wait_for_shutoff(self, domain, timeout):
        # No connection: virt.wait_for_shutoff then polls domain.state()
        # and leaves nova's event callbacks alone.
        return virt.wait_for_shutoff(None, domain, timeout,
                                     poll_interval=SHUTOFF_POLL_INTERVAL)

    # -- reading ---------------------------------------------------------

    def get_console_output(self, context, instance):
        """The whole console history on this host, nova's read otherwise.

        nova's manager keeps the last ``length`` lines of what is returned
        here, so the merged read returns the last ``max_console_bytes``
        (nova's ``MAX_CONSOLE_BYTES``) of the merged chain.
        """
        if self._cl_enabled():
            try:
                return self.consolelog.get_console_output(instance.uuid)
            except Exception as e:
                LOG.warning('Merged console read failed, falling back to '
                            "nova's: %s", e, instance=instance)
        return super().get_console_output(context, instance)
