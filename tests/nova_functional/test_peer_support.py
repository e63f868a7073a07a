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

"""Scenario 5: mixed deployments during a rolling upgrade.

A destination capped at RPC 1.0 still gets the whole console log; a source
without nova-consolelog (nova's own driver, no endpoint) does not stop the
migration: the log is simply not migrated, and a warning says so.
"""

from tests.nova_functional import base
from tests.nova_functional import guest_lines


class CappedDestinationTest(base.ConsoleLogNovaTestBase):

    def test_destination_capped_at_1_0_gets_the_whole_log(self):
        self.src = self.start_host('src')
        self.flags(consolelog='1.0', group='upgrade_levels')
        self.dest = self.start_host('dest')
        self.assertEqual('1.0',
                         self.dest.driver.consolelog.rpcapi.version_cap)
        self.assertFalse(
            self.dest.driver.consolelog.rpcapi.can_send_version('1.1'))
        server = self._create_server(host='src', networks='none')
        before = guest_lines.lines('src', 200)
        after = guest_lines.lines('dest', 10)
        self.write_console('src', server['id'], before)

        server = self._live_migrate(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.write_console('dest', server['id'], after)
        self.assertEqual(guest_lines.text(before, after),
                         self.console_output(server))


class SourceWithoutEndpointTest(base.ConsoleLogNovaTestBase):

    def test_migration_succeeds_and_log_is_not_migrated(self):
        self.src = self.start_host('src', 'libvirt.LibvirtDriver')
        self.dest = self.start_host('dest')
        server = self._create_server(host='src', networks='none')
        self.write_console('src', server['id'], guest_lines.lines('src', 30))
        after = guest_lines.lines('dest', 5)

        server = self._live_migrate(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        # nova's driver undefined its domain (UNDEFINE_SOURCE) and deleted
        # the instance directory with the console log: nothing to migrate.
        self.assertTrue(self.migration_flags[0] &
                        base.VIR_MIGRATE_UNDEFINE_SOURCE)
        self.assertIsNone(self.domain('src', server['id']))
        self.write_console('dest', server['id'], after)

        self.assertEqual(guest_lines.text(after), self.console_output(server))
        warnings = [line for line in self.stdlog.logger.output.splitlines()
                    if 'WARNING [nova_consolelog' in line and
                    server['id'] in line]
        self.assertTrue(warnings, 'no console-log warning logged')
        self.assertIn('live migration goes on', warnings[0])
