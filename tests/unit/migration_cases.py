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

"""Two hosts on fake:// and the live-migration steps between them.

``Host`` is one compute host (its endpoint, client and migration steps)
and stands in for QEMU and nova's cleanup on it; ``MigrationTestBase``
puts a rotated chain on ``src`` and walks a migration up to the
switch-over. The migration, shelve, evacuation and import-gate tests build
on it; no tests here.
"""

import os
import shutil
import uuid

from oslotest import base as test_base

from nova_consolelog import migration

from tests import fixtures as test_fixtures


def lines(first, last, host):
    return b''.join(b'%s line %06d\r\n' % (host.encode(), i)
                    for i in range(first, last))


class Host:
    """One compute host: its endpoint, client and migration steps."""

    def __init__(self, hosts, name, **overrides):
        self.name = name
        self.conf = hosts.start(name, **overrides)
        _, self.rpcapi = hosts.client(name, **overrides)
        self.steps = migration.ConsoleLogMigration(
            self.conf, name, self.rpcapi,
            wait_for_shutoff=lambda domain, timeout: True)

    def instance_dir(self, instance_uuid):
        return os.path.join(self.conf.consolelog.instances_path,
                            instance_uuid)

    def append(self, instance_uuid, name, data):
        path = self.instance_dir(instance_uuid)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, name), 'ab') as f:
            f.write(data)

    def qemu_start(self, instance_uuid):
        """What virtlogd does at a QEMU start with append="off"."""
        path = self.instance_dir(instance_uuid)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name == 'console.log' or (
                    name.startswith('console.log.')
                    and name[len('console.log.'):].isdigit()):
                os.unlink(os.path.join(path, name))
        open(os.path.join(path, 'console.log'), 'wb').close()

    def nova_cleanup(self, instance_uuid):
        shutil.rmtree(self.instance_dir(instance_uuid), ignore_errors=True)

    def read(self, instance_uuid, length=None):
        return self.steps.get_console_output(instance_uuid, length=length)


class MigrationTestBase(test_base.BaseTestCase):

    shared = False

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(test_fixtures.Hosts())
        self.uuid = str(uuid.uuid4())
        overrides = {}
        if self.shared:
            shared = os.path.join(self.hosts.root, 'shared')
            os.makedirs(shared)
            overrides = dict(
                instances_path=shared,
                stash_path=os.path.join(shared, '.consolelog-stash'))
        self.src = Host(self.hosts, 'src', max_console_bytes=1 << 20,
                        **overrides)
        self.dst = Host(self.hosts, 'dst', max_console_bytes=1 << 20,
                        **overrides)
        # A rotated chain on the source, as virtlogd leaves it.
        self.before = lines(0, 300, 'src')
        self.src.append(self.uuid, 'console.log.1', self.before[:9000])
        self.src.append(self.uuid, 'console.log.0', self.before[9000:15000])
        self.src.append(self.uuid, 'console.log', self.before[15000:])

    def migrate_until_switchover(self):
        self.src.steps.live_migration_started(self.uuid, 'dst', self.shared)
        self.dst.steps.pre_live_migration(self.uuid, 'src', self.shared)
        self.dst.qemu_start(self.uuid)

    def guest_prints_on_dst(self, count):
        """Migrated up to the switch-over; ``count`` new lines on dst.

        Returns the whole log: the source's chain, then those lines.
        """
        self.migrate_until_switchover()
        after = lines(0, count, 'dst')
        self.dst.append(self.uuid, 'console.log', after)
        return self.before + after
