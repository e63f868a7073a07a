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

"""Cold migration and resize through nova's API: the history moves along.

nova's ``migrate_disk_and_power_off`` renames the source's instance
directory to ``<dir>_resize`` and copies only the disks; the destination's
QEMU starts without console output; a confirm deletes ``<dir>_resize``
(console.log included), a revert renames it back and starts the guest on
the source again (DESIGN.md facts 11 and 13). ``FakeQemu`` (see
test_new_qemu) makes every start truncate the console as virtlogd does.

Each host has its own instance directory, so the source stashes the chain
and the destination pulls it over our RPC (on nova's fake transport); the
same-host resize installs it locally. nova's copy of the disks is local
here (one CONF: both hosts have the same address, fact 13).
"""

from tests.nova_functional import base
from tests.nova_functional import test_new_qemu

LINES_PER_BOOT = test_new_qemu.LINES_PER_BOOT
text = test_new_qemu.text


class ColdMigrationTest(test_new_qemu.CountingGuestTestBase):

    def held(self, hostname):
        return self.consolelog(hostname).held_stashes(self.uuid)

    def assert_console(self, lines):
        self.assertEqual(text(lines), self.console_output(self.server))

    def last_start_on(self, hostname):
        self.assertEqual(hostname, self.qemu.starts[self.uuid][-1][0])

    # -- to another host ---------------------------------------------------

    def migrate_to_host2(self):
        self.start_host('host1')
        self.start_host('host2')
        self.boot('host1')
        self.server = self._migrate_server(self.server, host='host2')
        self.assertEqual('host2', self.server['OS-EXT-SRV-ATTR:host'])
        self.last_start_on('host2')
        self.boot_prints()
        self.assert_console(self.printed())
        # Installed on host2 once, held on host1 for a revert.
        self.assertEqual(['host2'],
                         [s.installed_by for s in self.held('host1')])
        self.assertIsNone(self.consolelog('host2').record(self.uuid).load())

    def reverted_on_host1(self, kept):
        """After a revert: host1's new boot follows ``kept``, nothing held.

        What the guest printed on the resized instance went with nova's
        destroy there; everything from before the resize is back, in
        order, once.
        """
        self.last_start_on('host1')
        self.boot_prints()
        self.assert_console(kept + self.printed()[len(kept) +
                                                  LINES_PER_BOOT:])
        self.assertEqual([], self.held('host1'))
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))

    def test_cold_migration_then_confirm(self):
        self.migrate_to_host2()
        self.server = self._confirm_resize(self.server)
        self.assertEqual([], self.held('host1'))
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))
        self.assert_console(self.printed())
        # The history keeps growing at the next start there.
        self.server = self._reboot_server(self.server, hard=True)
        self.last_start_on('host2')
        self.boot_prints()
        self.assert_console(self.printed())

    def test_cold_migration_then_revert(self):
        self.migrate_to_host2()
        on_host2 = self.qemu.newest_from[self.uuid]
        kept = self.printed()[:on_host2]
        self.server = self._revert_resize(self.server)
        self.assertEqual('host1', self.server['OS-EXT-SRV-ATTR:host'])
        self.reverted_on_host1(kept)
        self.assertIsNone(self.consolelog('host2').record(self.uuid).load())

    # -- on the same host ----------------------------------------------------

    def resize_here(self):
        self.flags(allow_resize_to_same_host=True)
        self.start_host('host1')
        self.boot('host1')
        flavor = self._create_flavor(memory_mb=4096, vcpu=2, disk=20,
                                     ephemeral=10)
        self.server = self._resize_server(self.server, flavor)
        self.last_start_on('host1')
        self.boot_prints()
        self.assert_console(self.printed())
        self.assertEqual(['host1'],
                         [s.installed_by for s in self.held('host1')])

    def test_same_host_resize_then_confirm(self):
        self.resize_here()
        self.server = self._confirm_resize(self.server)
        self.assertEqual([], self.held('host1'))
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))
        self.assert_console(self.printed())

    def test_same_host_resize_then_revert(self):
        self.resize_here()
        resized_from = self.qemu.newest_from[self.uuid]
        kept = self.printed()[:resized_from]
        self.server = self._revert_resize(self.server)
        self.reverted_on_host1(kept)


class NovaDriverControlTest(base.ConsoleLogNovaTestBase):
    """nova's own driver: a cold migration leaves the newest boot only.

    Proves the scenario is a test at all: the same steps with nova's
    driver lose what the guest printed before the migration.
    """

    def test_cold_migration_loses_the_history(self):
        qemu = self.useFixture(test_new_qemu.FakeQemu(self))
        for hostname in ('host1', 'host2'):
            self.start_host(hostname,
                            compute_driver='libvirt.LibvirtDriver')
        server = self._create_server(host='host1', networks='none')
        uuid = server['id']
        qemu.guest_prints(uuid, [b'boot 01 line %04d' % i
                                 for i in range(LINES_PER_BOOT)])
        server = self._migrate_server(server, host='host2')
        qemu.guest_prints(uuid, [b'boot 02 line %04d' % i
                                 for i in range(LINES_PER_BOOT)])
        self.assertEqual(text(qemu.printed[uuid][-LINES_PER_BOOT:]),
                         self.console_output(server))
