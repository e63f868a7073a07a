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

"""The driver inside nova: loading, flags, per-host paths, console read."""

import os

from tests.nova_functional import base

CONSOLE = [b'boot line %03d' % i for i in range(20)]


class DriverTest(base.ConsoleLogNovaTestBase):

    def setUp(self):
        super().setUp()
        self.src = self.start_host('src')
        self.dest = self.start_host('dest')

    def test_loaded_by_compute_driver_name(self):
        # Each compute runs our driver, with its own instances path.
        self.assertNotEqual(self.src.driver.instances_path,
                            self.dest.driver.instances_path)
        self.assertIsNotNone(self.src.driver.consolelog)
        self.assertEqual('src', self.src.driver.consolelog.host)
        self.assertEqual(self.dest.driver.instances_path,
                         self.dest.driver.consolelog.instances_path)

    def test_migration_flags_keep_source_defined(self):
        for driver in (self.src.driver, self.dest.driver):
            self.assertFalse(driver._live_migration_flags &
                             base.VIR_MIGRATE_UNDEFINE_SOURCE)
            self.assertFalse(driver._block_migration_flags &
                             base.VIR_MIGRATE_UNDEFINE_SOURCE)
            self.assertTrue(driver._live_migration_flags &
                            base.VIR_MIGRATE_PERSIST_DEST)

    def test_console_read_through_api(self):
        server = self._create_server(host='src', networks='none')
        self.write_console('src', server['id'], CONSOLE)
        self.assertEqual(
            (b'\n'.join(CONSOLE) + b'\n').decode(),
            self.console_output(server))
        self.assertEqual('boot line 018\nboot line 019\n',
                         self.console_output(server, length=3))

    def test_plain_live_migration_non_shared(self):
        server = self._create_server(host='src', networks='none')
        self.write_console('src', server['id'], CONSOLE)
        self.dest.driver.consolelog = None  # nova's behaviour on the dest
        self.src.driver.consolelog = None
        server = self._live_migrate(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(1, len(self.migration_flags))
        # Non-shared storage: nova block-migrated, created the instance
        # dir on the destination and deleted the source's.
        self.assertTrue(self.migration_flags[0] & (1 << 7))  # NON_SHARED_INC
        self.assertTrue(os.path.isdir(self.instance_dir('dest',
                                                        server['id'])))
        self.assertFalse(os.path.exists(self.instance_dir('src',
                                                          server['id'])))


class DisabledTest(base.ConsoleLogNovaTestBase):
    """``[consolelog] enabled = False``: nova's behaviour, unchanged."""

    def test_nova_behaviour_when_disabled(self):
        self.flags(enabled=False, group='consolelog')
        self.src = self.start_host('src')
        self.dest = self.start_host('dest')
        for driver in (self.src.driver, self.dest.driver):
            self.assertTrue(driver._live_migration_flags &
                            base.VIR_MIGRATE_UNDEFINE_SOURCE)
        server = self._create_server(host='src', networks='none')
        self.write_console('src', server['id'], CONSOLE)
        server = self._live_migrate(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.migration_flags[0] &
                        base.VIR_MIGRATE_UNDEFINE_SOURCE)
        self.assertIsNone(self.domain('src', server['id']))
        # Nothing stashed, nothing imported: the source's log went with
        # nova's cleanup, the destination starts a new one.
        self.assertFalse(os.path.exists(
            self.src.driver.consolelog.stash_root))
        self.assertFalse(os.path.exists(
            self.dest.driver.consolelog.stash_root))
        self.write_console('dest', server['id'], [b'new log'])
        # nova's own read (fakelibvirt's console is a relative
        # "dummy.log": nothing there).
        self.assertEqual('', self.console_output(server))
        self.assertEqual([], self.src.driver.consolelog_periodic_task())
