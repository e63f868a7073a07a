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

"""The live-migration steps of console-log migration, driver-independent.

A compute driver calls these at the matching points of nova's live
migration; nothing here imports nova. Order on the source (nova's
``ComputeManager._post_live_migration``): ``driver.post_live_migration()``
→ ``post_live_migration_at_source()`` → ``driver.cleanup()`` (deletes the
instance directory, console.log included, when the path is not shared) →
RPC ``post_live_migration_at_destination``. Hence the source stashes its
chain in ``post_live_migration``, and the destination pulls it afterwards.

No method here ever raises into the migration: a failure logs one warning,
leaves the data where a retry finds it (a pending record retried by
``retry_pending``), and returns.

STATUS: interface stub. Implementation: issue 4.
"""


class ConsoleLogMigration:
    """Console-log migration steps for the compute host ``host``.

    :param conf: ConfigOpts with our options registered.
    :param host: this compute host's name (nova's ``CONF.host``).
    :param rpcapi: a ``rpc.api.ConsoleLogAPI`` client.
    :param instances_path: directory holding instance directories.
    """

    def __init__(self, conf, host, rpcapi, instances_path=None):
        raise NotImplementedError

    # Source, from the driver's live_migration() before the guest moves:
    # from now on console reads on the source also show what the
    # destination's guest writes, so no read is ever missing lines.
    def live_migration_started(self, instance_uuid, dest_host,
                               shared_instance_path):
        raise NotImplementedError

    # Destination, before the incoming QEMU starts (virtlogd truncates).
    def pre_live_migration(self, instance_uuid, source_host,
                           shared_instance_path):
        raise NotImplementedError

    # Source, after the guest runs on the destination, before nova's cleanup.
    # ``domain`` is the source libvirt domain (left defined: no
    # VIR_MIGRATE_UNDEFINE_SOURCE); waits for it to be shut off, then stashes.
    def post_live_migration_at_source(self, instance_uuid, dest_host,
                                      shared_instance_path, domain=None):
        raise NotImplementedError

    # Destination, from nova's post_live_migration_at_destination: pull,
    # verify, install as history, release the source's stash.
    def post_live_migration_at_destination(self, instance_uuid, source_host,
                                           shared_instance_path):
        raise NotImplementedError

    def rollback_at_source(self, instance_uuid):
        raise NotImplementedError

    def rollback_at_destination(self, instance_uuid, source_host,
                                shared_instance_path):
        raise NotImplementedError

    # Console read for os-getConsoleOutput: merged chain + history, and the
    # part still on the peer during the migration window.
    def get_console_output(self, instance_uuid, length=None):
        raise NotImplementedError

    # Periodic: retry pending pulls, expire old stashes.
    def retry_pending(self):
        raise NotImplementedError
