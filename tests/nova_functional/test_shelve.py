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

"""Shelve, shelve offload and unshelve through nova's API.

nova's shelve offload destroys the guest on its host (the instance
directory, console.log included, goes); the unshelve spawns it on a
scheduled host. ``FakeQemu`` (fake_qemu.py) makes every start
truncate the console as virtlogd does. The offloading host stashes the
chain; the unshelving host installs it (same host) or pulls it from the
shelved host over our RPC on nova's fake transport (another host, picked
with microversion 2.91's ``host``).
"""

from unittest import mock

from nova import test
from nova.tests.functional.api import client
from nova.virt.libvirt import driver as libvirt_driver

from tests.nova_functional import base
from tests.nova_functional import fake_qemu

LINES_PER_BOOT = fake_qemu.LINES_PER_BOOT
text = fake_qemu.text


class ShelveTest(fake_qemu.CountingGuestTestBase):

    microversion = '2.91'

    def assert_console(self, lines):
        self.assertEqual(text(lines), self.console_output(self.server))

    def shelve_and_offload(self, explicit):
        if explicit:
            self.flags(shelved_offload_time=-1)
            self.server = self._shelve_server(self.server, 'SHELVED')
            self._shelve_offload_server(self.server)
        else:
            self.server = self._shelve_server(self.server)
        self.assertEqual(1, len(self.consolelog('host1').stashes(self.uuid)))

    def unshelve(self, hostname):
        self.api.post_server_action(self.uuid,
                                    {'unshelve': {'host': hostname}})
        self.server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(hostname, self.server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(hostname, self.qemu.starts[self.uuid][-1][0])

    def test_unshelve_on_the_same_host(self):
        self.start_host('host1')
        self.boot()
        self.boot_prints()  # more output of the same boot
        self.shelve_and_offload(explicit=True)
        self.unshelve('host1')
        self.boot_prints()
        self.assert_console(self.printed())
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))
        self.assertIsNone(self.consolelog('host1').record(self.uuid).load())

    def test_unshelve_on_another_host(self):
        self.start_host('host1')
        self.start_host('host2')
        self.boot()
        self.shelve_and_offload(explicit=False)
        self.unshelve('host2')
        self.boot_prints()
        host2 = self.consolelog('host2')
        self.wait_for(lambda: host2.record(self.uuid).load() is None,
                      what='the pull from the shelved host')
        self.assert_console(self.printed())
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))
        # And a restart there keeps it all.
        self.server = self._reboot_server(self.server, hard=True)
        self.boot_prints()
        self.assert_console(self.printed())

    def test_shelved_host_down_at_unshelve(self):
        self.start_host('host1')
        self.start_host('host2')
        self.boot()
        self.shelve_and_offload(explicit=False)
        server1 = self.consolelog('host1')
        self.computes['host1'].driver._consolelog_server.stop()
        self.unshelve('host2')
        self.boot_prints()
        host2 = self.consolelog('host2')
        self.wait_for(lambda: (host2.record(self.uuid).load() or {}).get(
            'state') == 'pulling', what='the owed pull')
        # The unshelve did not fail; the newest boot reads meanwhile.
        self.assertTrue(server1.has_stash(self.uuid))
        self.computes['host1'].driver._consolelog_server.start()
        self.wait_for(lambda: self.uuid in host2.retry_pending() or
                      host2.record(self.uuid).load() is None,
                      what='the periodic retry')
        self.assertIsNone(host2.record(self.uuid).load())
        self.assert_console(self.printed())
        self.assertFalse(server1.has_stash(self.uuid))

    def test_failed_offload_keeps_the_history_here(self):
        self.start_host('host1')
        self.boot()
        self.flags(shelved_offload_time=-1)
        self.server = self._shelve_server(self.server, 'SHELVED')
        real = libvirt_driver.LibvirtDriver.destroy

        def failing(driver, *args, **kwargs):
            raise test.TestingException('destroy failed')

        with mock.patch.object(libvirt_driver.LibvirtDriver, 'destroy',
                               failing):
            # nova's fake RPC casts synchronously: the error reaches the API.
            self.assertRaises(client.OpenStackApiException,
                              self.api.post_server_action, self.uuid,
                              {'shelveOffload': {}})
        self.assertIs(real, libvirt_driver.LibvirtDriver.destroy)
        self.server = self._wait_for_state_change(self.server, 'SHELVED')
        # The stash moved back: the unshelve is a power on here.
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))
        self.server = self._unshelve_server(self.server)
        self.boot_prints()
        self.assert_console(self.printed())

    def test_deleted_while_shelved_offloaded(self):
        self.start_host('host1')
        self.boot()
        self.shelve_and_offload(explicit=False)
        driver = self.computes['host1'].driver
        # Still shelved: the stash stays.
        self.assertEqual([], driver.consolelog_forget_deleted())
        self._delete_server(self.server)
        self.assertEqual([self.uuid], [r[0] for r in
                                       driver.consolelog_forget_deleted()])
        self.assertFalse(self.consolelog('host1').has_stash(self.uuid))


class NovaDriverControlTest(base.ConsoleLogNovaTestBase):
    """nova's own driver: an unshelve leaves the newest boot only."""

    def test_shelve_offload_loses_the_history(self):
        qemu = self.useFixture(fake_qemu.FakeQemu(self))
        self.start_host('host1', compute_driver='libvirt.LibvirtDriver')
        server = self._create_server(host='host1', networks='none')
        uuid = server['id']
        qemu.guest_prints(uuid, [b'boot 01 line %04d' % i
                                 for i in range(LINES_PER_BOOT)])
        server = self._shelve_server(server)
        server = self._unshelve_server(server)
        qemu.guest_prints(uuid, [b'boot 02 line %04d' % i
                                 for i in range(LINES_PER_BOOT)])
        self.assertEqual(text(qemu.printed[uuid][-LINES_PER_BOOT:]),
                         self.console_output(server))
