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

"""The driver's hooks in a live migration.

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
  can delete it. nova calls no ``cleanup()`` after a live migration on a
  shared instance path, so ``post_live_migration`` already records the
  domain for the reaper; until it goes, ``list_instances`` and
  ``list_instance_uuids`` leave it out (nova's periodic tasks would count
  it as an instance of this host).
* ``post_live_migration_at_destination``: pull the stash from the source.
* ``rollback_live_migration_at_source`` / ``..._at_destination``: put a
  stash back.
"""

import os

from nova import exception as nova_exception
from nova.objects import migrate_data as migrate_data_obj
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# Under the stash root: one empty file per instance whose migrated source
# domain this driver left defined for the reaper.
LEFT_DEFINED_DIR = '.left-defined'


class LiveMigrationHooks:
    """Mixin of ``LibvirtDriver``: the live-migration steps wired in."""

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        if self._consolelog_active(migrate_data):
            self._migration_dest[instance.uuid] = dest
            self.consolelog.live_migration_started(
                instance.uuid, dest, self._shared_path(migrate_data))
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
            self.consolelog.pre_live_migration(
                instance.uuid, instance.host, self._shared_path(migrate_data))
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
            # libvirt kept the domain (our flags). Recorded here, not only
            # in cleanup(): on a shared instance path nova calls none.
            try:
                self._mark_left_defined(instance.uuid)
            except OSError as e:
                LOG.warning('Cannot record the source domain as left for '
                            'the reaper (%s); it stays defined until '
                            'removed by hand.', e, instance=instance)
        self.consolelog.post_live_migration_at_source(
            instance.uuid, dest, self._shared_path(migrate_data),
            domain=domain)

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
        if not self._cl_enabled():
            return
        # instance.host still names the source: the manager saves the new
        # host after this hook. Whether the path is shared, the record
        # written in pre_live_migration knows.
        self.consolelog.post_live_migration_at_destination(instance.uuid,
                                                           instance.host)

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        try:
            super().rollback_live_migration_at_source(context, instance,
                                                      migrate_data)
        finally:
            self._migration_dest.pop(instance.uuid, None)
            if self.consolelog is not None:
                self.consolelog.rollback_at_source(instance.uuid)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        # Give a moved-aside chain back before nova's destroy can remove
        # the instance directory of a non-shared path.
        if self.consolelog is not None:
            self.consolelog.rollback_at_destination(
                instance.uuid, instance.host,
                self._shared_path(migrate_data))
        super().rollback_live_migration_at_destination(
            context, instance, network_info, block_device_info,
            destroy_disks=destroy_disks, migrate_data=migrate_data)
