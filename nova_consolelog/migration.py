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

"""The console-log steps nova's driver calls, driver-independent.

``ConsoleLogMigration`` is the one entry point: a compute driver calls its
methods at the matching points of nova's live migration, cold migration
and resize, at every QEMU start and around a rebuild; a periodic task calls
``retry_pending``; console reads call ``get_console_output``. Nothing here
imports nova. The work is done by the ``handover`` package (see its
docstring for the story of a hand-over); this class only builds its parts
for one host and guards every step (``handover.guard``): no step raises
into nova, a failure logs one warning and leaves the data where a retry
finds it.
"""

from nova_consolelog.handover import catching
from nova_consolelog.handover import cold
from nova_consolelog.handover import guard
from nova_consolelog.handover import host as cl_host
from nova_consolelog.handover import importing
from nova_consolelog.handover import live
from nova_consolelog.handover import periodic
from nova_consolelog.handover import reading
from nova_consolelog.handover import record
from nova_consolelog.handover import restarts

# Names other modules (``cmd.status``) read hand-over records with.
HandoverRecord = record.HandoverRecord
RECORDS_DIR = record.RECORDS_DIR


class ConsoleLogMigration:
    """Console-log steps for the compute host ``host``.

    :param conf: ConfigOpts with our options registered; always passed in,
        never the global one.
    :param host: this compute host's name (nova's ``CONF.host``).
    :param rpcapi: a ``rpc.api.ConsoleLogAPI`` client, or None when this
        host cannot talk to its peers (then only local steps run).
    :param instances_path: directory holding instance directories; defaults
        to ``[consolelog] instances_path``.
    :param wait_for_shutoff: callable ``(domain, timeout) -> bool`` used by
        the source step; defaults to :func:`virt.wait_for_shutoff`.
    """

    def __init__(self, conf, host, rpcapi, instances_path=None,
                 wait_for_shutoff=None):
        self.handover = cl_host.HandoverHost(conf, host, rpcapi,
                                             instances_path)
        self.catchers = catching.Catchers(self.handover)
        importer = importing.Importer(self.handover, self.catchers)
        self.live = live.LiveMigrationSteps(self.handover, self.catchers,
                                            importer, wait_for_shutoff)
        self.same_host = restarts.SameHostSteps(self.handover)
        self.cold = cold.ColdMigrationSteps(self.handover, importer)
        self.reader = reading.MergedConsoleReader(self.handover,
                                                  self.catchers)
        self.housekeeping = periodic.Housekeeping(self.handover, importer)

    @property
    def enabled(self):
        return self.conf.consolelog.enabled

    # -- this host -------------------------------------------------------

    @property
    def conf(self):
        return self.handover.conf

    @property
    def host(self):
        return self.handover.host

    @property
    def rpcapi(self):
        return self.handover.rpcapi

    @property
    def instances_path(self):
        return self.handover.instances_path

    @property
    def stash_root(self):
        return self.handover.stash_root

    @property
    def records_dir(self):
        return self.handover.records_dir

    def chain(self, instance_uuid):
        return self.handover.chain(instance_uuid)

    def record(self, instance_uuid):
        return self.handover.record(instance_uuid)

    def lock(self, instance_uuid, shared=False):
        return self.handover.lock(instance_uuid, shared=shared)

    def stashes(self, instance_uuid):
        return self.handover.stashes(instance_uuid)

    def held_stashes(self, instance_uuid):
        return self.handover.held_stashes(instance_uuid)

    def has_stash(self, instance_uuid):
        """True while this host still holds console log for the instance."""
        return bool(self.stashes(instance_uuid))

    def resize_dir(self, instance_uuid):
        return self.cold.resize_dir(instance_uuid)

    # -- live migration (handover.live) ----------------------------------

    @guard.never_raises()
    def live_migration_started(self, instance_uuid, dest_host,
                               shared_instance_path):
        """Source, before the guest moves."""
        return self.live.started(instance_uuid, dest_host,
                                 shared_instance_path)

    @guard.never_raises()
    def pre_live_migration(self, instance_uuid, source_host,
                           shared_instance_path):
        """Destination, before the incoming QEMU starts."""
        return self.live.before_incoming_qemu(instance_uuid, source_host,
                                              shared_instance_path)

    @guard.never_raises()
    def post_live_migration_at_source(self, instance_uuid, dest_host,
                                      shared_instance_path, domain=None):
        """Source, after the switch-over, before nova's cleanup."""
        return self.live.stash_at_source(instance_uuid, dest_host,
                                         shared_instance_path, domain)

    @guard.never_raises()
    def post_live_migration_at_destination(self, instance_uuid, source_host,
                                           shared_instance_path=None):
        """Destination, after the switch-over: import the source's part."""
        return self.live.import_at_destination(instance_uuid, source_host,
                                               shared_instance_path)

    @guard.never_raises()
    def rollback_at_source(self, instance_uuid):
        """Source: the migration failed."""
        return self.live.rollback_at_source(instance_uuid)

    @guard.never_raises()
    def rollback_at_destination(self, instance_uuid, source_host,
                                shared_instance_path):
        """Destination: the migration failed."""
        return self.live.rollback_at_destination(instance_uuid, source_host,
                                                 shared_instance_path)

    # -- a new QEMU, a rebuild (handover.restarts) -----------------------

    @guard.never_raises()
    def before_qemu_start(self, instance_uuid):
        """Same host, before nova starts a new QEMU."""
        return self.same_host.before_qemu_start(instance_uuid)

    @guard.never_raises()
    def before_instance_dir_removed(self, instance_uuid):
        """Same host, before a rebuild deletes the instance directory."""
        return self.same_host.before_instance_dir_removed(instance_uuid)

    @guard.never_raises()
    def after_instance_dir_removed(self, instance_uuid, stash_id):
        """Same host, after the rebuild's destroy."""
        return self.same_host.after_instance_dir_removed(instance_uuid,
                                                         stash_id)

    # -- cold migration and resize (handover.cold) -----------------------

    @guard.never_raises()
    def cold_migration_started(self, instance_uuid, dest_host,
                               resize_dir=None):
        """Source, after nova powered off and renamed the directory."""
        return self.cold.started(instance_uuid, dest_host, resize_dir)

    @guard.never_raises()
    def cold_migration_finishing(self, instance_uuid, source_host):
        """Destination, before nova starts the guest here."""
        return self.cold.finishing(instance_uuid, source_host)

    @guard.never_raises()
    def cold_migration_finished(self, instance_uuid, source_host):
        """Destination, after nova started the guest here."""
        return self.cold.finished(instance_uuid, source_host)

    @guard.never_raises()
    def cold_migration_confirmed(self, instance_uuid):
        """Source, after the confirm."""
        return self.cold.confirmed(instance_uuid)

    @guard.never_raises()
    def cold_migration_reverted(self, instance_uuid):
        """Source, at the revert, before the guest starts again."""
        return self.cold.reverted(instance_uuid)

    @guard.never_raises()
    def cold_migration_abandoned(self, instance_uuid):
        """Destination, the resize reverted."""
        return self.cold.abandoned(instance_uuid)

    # -- reads and periodic work -----------------------------------------

    def get_console_output(self, instance_uuid, length=None):
        """The merged console output (``handover.reading``).

        Not guarded: the driver falls back to nova's own read on an error.
        """
        return self.reader.read(instance_uuid, length, enabled=self.enabled)

    @guard.never_raises(default=list)
    def retry_pending(self):
        """Periodic: finish owed imports, expire and clean up.

        See ``handover.periodic``. Returns the uuids whose import completed
        in this run.
        """
        return self.housekeeping.run()
