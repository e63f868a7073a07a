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

"""nova's libvirt driver with console-log migration.

The only module of this project that imports nova (tested with nova
34.0.0). nova loads a compute driver only as ``nova.virt.<compute_driver>``,
so the thin package ``nova/virt/consolelog`` re-exports this class and
operators set ``[DEFAULT] compute_driver = consolelog.LibvirtDriver``.

Where the steps hook into nova's live migration, and why:

* ``live_migration`` (source, before ``migrateToURI3``): remember the
  destination; the later source hooks are not told it.
* ``pre_live_migration`` (destination): nova's part first — it creates the
  instance directory and refuses one that exists — then ours, which on a
  shared instance path moves the chain aside *before* the incoming QEMU
  starts (virtlogd's ``append="off"`` unlinks every ``console.log*`` then).
  The incoming QEMU only starts once this method has returned.
* ``post_live_migration`` (source): runs before nova's ``cleanup()``
  deletes the instance directory, console.log included; the chain is
  stashed outside it once the migrated domain has shut off.
* ``cleanup(migrate_data=...)`` is, in nova, only the source's
  post-live-migration cleanup: the shut-off source domain is left defined
  (libvirt left it defined: ``VIR_MIGRATE_UNDEFINE_SOURCE`` is not in our
  flags) and the periodic reaper undefines it once nova's database shows
  the instance elsewhere and the console log has been handed over. The
  stash lives outside the instance directory, so nothing of nova's cleanup
  can delete it.
* ``post_live_migration_at_destination``: pull the stash from the source.
* ``rollback_live_migration_at_source`` / ``..._at_destination``: put a
  stash back.

Cold migration and resize: ``migrate_disk_and_power_off`` (source) stashes
the chain nova left in ``<dir>_resize``, held until the confirm;
``finish_migration`` (destination) installs it as history after nova's
start; ``confirm_migration`` drops the held stash; ``finish_revert_migration``
moves it back before the source's guest starts again (``_keep_console``).

No console-log step raises into nova: ``ConsoleLogMigration`` guards its
steps and this class guards them again. ``get_console_output`` serves the
merged history and falls back to nova's read on any failure of ours.

Periodic work (retry of unfinished pulls, stash expiry, the leftover-domain
reaper) runs in a ``FixedIntervalLoopingCall`` started by ``init_host``
every ``[consolelog] reaper_interval`` seconds and stopped by
``cleanup_host``: nova gives drivers no periodic-task hook of their own
(``manage_image_cache`` is tied to the image cache settings), and the
libvirt driver already uses looping calls for its own timed work.
"""

import os
import threading

from nova.compute import task_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.objects import migrate_data as migrate_data_obj
from nova import rpc as nova_rpc
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import loopingcall

from nova_consolelog import conf as cl_conf
from nova_consolelog import virt

LOG = logging.getLogger(__name__)

CONF = cl_conf.CONF

# Polling interval while waiting for the migrated source domain to stop.
# nova's Host owns the connection's lifecycle-event callbacks, so we poll
# instead of registering our own; after a completed migration job the
# domain is normally stopped already at the first look.
SHUTOFF_POLL_INTERVAL = 0.2

# Under the stash root: one empty file per instance whose migrated source
# domain this driver left defined for the reaper.
LEFT_DEFINED_DIR = '.left-defined'


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


class LibvirtDriver(libvirt_driver.LibvirtDriver):
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
        enabled = CONF.consolelog.enabled
        return (virt.migration_flags(live, enabled),
                virt.migration_flags(block, enabled))

    def _consolelog_active(self, migrate_data):
        """True when our steps should run for this migration."""
        if self.consolelog is None or not CONF.consolelog.enabled:
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

    def _step(self, name, *args, **kwargs):
        """Run a ConsoleLogMigration step; never raise into nova."""
        try:
            return getattr(self.consolelog, name)(*args, **kwargs)
        except Exception:
            LOG.exception('Console-log step %s failed; nova goes on.',
                          name)
            return None

    def _wait_for_shutoff(self, domain, timeout):
        # No connection: virt.wait_for_shutoff then polls domain.state()
        # and leaves nova's event callbacks alone.
        return virt.wait_for_shutoff(None, domain, timeout,
                                     poll_interval=SHUTOFF_POLL_INTERVAL)

    # -- every other QEMU start -------------------------------------------

    def _keep_console(self, instance):
        """Before a new QEMU starts on this host; see before_qemu_start.

        At the revert of a resize the held stash goes back into the
        instance directory first, so that this start keeps it as history.
        """
        if self.consolelog is not None and CONF.consolelog.enabled:
            if instance.uuid in self._reverting:
                self._step('cold_migration_reverted', instance.uuid)
            self._step('before_qemu_start', instance.uuid)

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
        if (self.consolelog is not None and CONF.consolelog.enabled and
                instance.task_state == task_states.RESIZE_REVERTING):
            # A resize destination's destroy at a revert: the source takes
            # its held stash back, no pull is owed any more.
            self._step('cold_migration_abandoned', instance.uuid)
        if destroy_disks and self._rebuilding_here(instance):
            stash_id = self._step('before_instance_dir_removed',
                                  instance.uuid)
        try:
            return super().destroy(
                context, instance, network_info,
                block_device_info=block_device_info,
                destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        finally:
            if stash_id is not None:
                self._step('after_instance_dir_removed', instance.uuid,
                           stash_id)

    def _rebuilding_here(self, instance):
        """A rebuild that spawns the instance on this host again.

        Not an evacuation's: its destination never destroys, and the old
        host destroys what nova's database places elsewhere.
        """
        return (self.consolelog is not None and CONF.consolelog.enabled and
                instance.task_state == task_states.REBUILDING and
                instance.host == self.consolelog.host)

    # -- cold migration and resize ---------------------------------------

    def _cold_active(self):
        return self.consolelog is not None and CONF.consolelog.enabled

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
        if self._cold_active():
            self._step('cold_migration_started', instance.uuid,
                       self._resize_dest(context, instance))
        return result

    @staticmethod
    def _resize_dest(context, instance):
        """The destination's compute host name (``dest`` is its address).

        None when nova's database does not say: the stash is then granted
        to whichever host asks.
        """
        try:
            mig = objects.Migration.get_by_id_and_instance(
                context, instance.migration_context.migration_id,
                instance.uuid)
            return mig.dest_compute
        except Exception as e:
            LOG.warning('Destination of the resize unknown (%s); its '
                        'console-log stash is not bound to one host', e,
                        instance=instance)
            return None

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        # nova's QEMU start here finds no chain (only disks were copied):
        # install the source's as history after it, its stash kept for a
        # revert; until then reads here take that part from the source.
        if self._cold_active():
            self._step('cold_migration_finishing', instance.uuid,
                       migration.source_compute)
        try:
            super().finish_migration(
                context, migration, instance, disk_info, network_info,
                image_meta, resize_instance, allocations,
                block_device_info=block_device_info, power_on=power_on,
                share_info=share_info)
        finally:
            # Also after a failed start: the instance lives here now (nova
            # set instance.host), and a later start keeps the history.
            if self._cold_active():
                self._step('cold_migration_finished', instance.uuid,
                           migration.source_compute)

    def confirm_migration(self, context, migration, instance, network_info):
        super().confirm_migration(context, migration, instance,
                                  network_info)
        if self._cold_active():
            self._step('cold_migration_confirmed', instance.uuid)

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
        if self._cold_active():
            self._step('cold_migration_reverted', instance.uuid)

    # -- the migration steps ---------------------------------------------

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        if self._consolelog_active(migrate_data):
            self._migration_dest[instance.uuid] = dest
            self._step('live_migration_started', instance.uuid, dest,
                       self._shared_path(migrate_data))
        return super().live_migration(
            context, instance, dest, post_method, recover_method,
            block_migration=block_migration, migrate_data=migrate_data)

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        # The instance comes back: the incoming domain replaces the one
        # left defined here when it went away.
        self._forget_left_defined(instance.uuid)
        result = super().pre_live_migration(
            context, instance, block_device_info, network_info, disk_info,
            migrate_data)
        if self._consolelog_active(migrate_data):
            # instance.host still names the source here.
            self._step('pre_live_migration', instance.uuid, instance.host,
                       self._shared_path(migrate_data))
        return result

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        super().post_live_migration(context, instance, block_device_info,
                                    migrate_data)
        dest = self._migration_dest.pop(instance.uuid, None)
        if not self._consolelog_active(migrate_data):
            return
        domain = None
        try:
            domain = self._host.get_guest(instance)._domain
        except nova_exception.InstanceNotFound:
            LOG.debug('Source domain already gone', instance=instance)
        except Exception as e:
            LOG.warning('Cannot look up the source domain: %s', e,
                        instance=instance)
        if domain is not None:
            # libvirt kept the domain (our flags). Recorded here for the
            # reaper, not only in cleanup(): on a shared instance path nova
            # does not call cleanup() after a live migration.
            try:
                self._mark_left_defined(instance.uuid)
            except OSError as e:
                LOG.warning('Cannot record the source domain as left for '
                            'the reaper (%s); it stays defined until '
                            'removed by hand.', e, instance=instance)
        self._step('post_live_migration_at_source', instance.uuid, dest,
                   self._shared_path(migrate_data), domain=domain)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        # nova passes migrate_data only from the source's post-live-
        # migration cleanup: keep the shut-off source domain for the reaper.
        keep = (isinstance(migrate_data,
                           migrate_data_obj.LibvirtLiveMigrateData) and
                self._consolelog_active(migrate_data))
        self._keep_defined.uuid = instance.uuid if keep else None
        try:
            return super().cleanup(
                context, instance, network_info,
                block_device_info=block_device_info,
                destroy_disks=destroy_disks, migrate_data=migrate_data,
                destroy_vifs=destroy_vifs, destroy_secrets=destroy_secrets)
        finally:
            self._keep_defined.uuid = None

    def _undefine_domain(self, instance, keep_vtpm=False, keep_nvram=False):
        if getattr(self._keep_defined, 'uuid', None) == instance.uuid:
            try:
                self._mark_left_defined(instance.uuid)
                LOG.info('Leaving the migrated source domain defined; the '
                         'console-log reaper undefines it once the '
                         'instance lives elsewhere.', instance=instance)
                return
            except OSError as e:
                LOG.warning('Cannot record the source domain as left for '
                            'the reaper (%s); undefining it now.', e,
                            instance=instance)
        super()._undefine_domain(instance, keep_vtpm=keep_vtpm,
                                 keep_nvram=keep_nvram)

    # The reaper only ever undefines domains this driver left defined: a
    # marker per instance under the stash root says which (it survives a
    # restart of nova-compute). Shut-off domains of any other origin —
    # a resize source, a stopped instance — are nova's business.

    def _left_defined_marker(self, instance_uuid):
        # Per host: on a shared instance path the stash root is shared.
        return os.path.join(self.consolelog.stash_root, LEFT_DEFINED_DIR,
                            self.consolelog.host, instance_uuid)

    def _left_defined(self):
        """UUIDs of the domains this host left defined for the reaper."""
        if self.consolelog is None:
            return set()
        try:
            return set(os.listdir(os.path.dirname(
                self._left_defined_marker('x'))))
        except OSError:
            return set()

    def _forget_left_defined(self, instance_uuid):
        if self.consolelog is None:
            return
        try:
            os.unlink(self._left_defined_marker(instance_uuid))
        except FileNotFoundError:
            pass
        except OSError as e:
            LOG.warning('Cannot drop the left-defined record of instance '
                        '%s: %s', instance_uuid, e)

    def _guests(self):
        """nova's guests of this host without the shut-off leftovers.

        A migrated source domain left defined for the reaper is no
        instance of this host: listed, nova's periodic tasks would count it
        ("found 0 instances in the database and 1 instances on the
        hypervisor") and its clean-ups would consider it.
        """
        guests = self._host.list_guests(only_running=False)
        leftovers = self._left_defined()
        if not leftovers:
            return guests
        return [g for g in guests
                if g.uuid not in leftovers or g.is_active()]

    def list_instances(self):
        return [guest.name for guest in self._guests()]

    def list_instance_uuids(self):
        return [guest.uuid for guest in self._guests()]

    def _mark_left_defined(self, instance_uuid):
        path = self._left_defined_marker(instance_uuid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w'):
            pass

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration,
            block_device_info)
        if self.consolelog is None or not CONF.consolelog.enabled:
            return
        # instance.host still names the source: the manager saves the new
        # host after this hook. The record written in pre_live_migration
        # knows whether the path is shared.
        record = self.consolelog.record(instance.uuid).load() or {}
        self._step('post_live_migration_at_destination', instance.uuid,
                   instance.host, bool(record.get('shared')))

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        try:
            super().rollback_live_migration_at_source(context, instance,
                                                      migrate_data)
        finally:
            self._migration_dest.pop(instance.uuid, None)
            if self.consolelog is not None:
                self._step('rollback_at_source', instance.uuid)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        # Give a moved-aside chain back before nova's destroy can remove
        # the instance directory of a non-shared path.
        if self.consolelog is not None:
            self._step('rollback_at_destination', instance.uuid,
                       instance.host, self._shared_path(migrate_data))
        super().rollback_live_migration_at_destination(
            context, instance, network_info, block_device_info,
            destroy_disks=destroy_disks, migrate_data=migrate_data)

    # -- reading ---------------------------------------------------------

    def get_console_output(self, context, instance):
        """The whole console history on this host, nova's read otherwise.

        nova's manager keeps the last ``length`` lines of what is returned
        here, so the merged read returns the last ``max_console_bytes``
        (nova's ``MAX_CONSOLE_BYTES``) of the merged chain.
        """
        if self.consolelog is not None and CONF.consolelog.enabled:
            try:
                return self.consolelog.get_console_output(instance.uuid)
            except Exception as e:
                LOG.warning('Merged console read failed, falling back to '
                            "nova's: %s", e, instance=instance)
        return super().get_console_output(context, instance)

    # -- periodic work ---------------------------------------------------

    def consolelog_periodic_task(self):
        """Retry owed pulls, expire stashes, undefine leftover domains.

        Returns the reaper's list of ``virt.Reaped``. Never raises.
        """
        if self.consolelog is None or not CONF.consolelog.enabled:
            return []
        self._step('retry_pending')
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
