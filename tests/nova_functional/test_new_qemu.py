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

"""The console history across every new QEMU on one host, via nova's API.

nova starts a new QEMU far more often than at a live migration (DESIGN.md
fact 11): hard and soft reboot, stop/start, suspend/resume, rescue and
unrescue, rebuild, the resume after a cold snapshot. With nova's
``<log append="off"/>`` virtlogd unlinks ``console.log`` and every
``console.log.N`` at each of those starts (fact 3), so ``os-getConsoleOutput``
loses every earlier boot. Our driver renames the files into history first.

fakelibvirt starts a domain without touching any file, so a test would
pass whatever the driver does: ``fake_qemu.FakeQemu`` makes every start,
ACPI shutdown and console path faithful (see there). With it the control
class shows what nova really serves: the newest boot only.
"""

from tests.nova_functional import base
from tests.nova_functional import fake_qemu

# A raw image of nova's Glance fixture other than the boot image.
REBUILD_IMAGE = '76fa36fc-c930-4bf3-8c8a-ea2a2420deb6'


class NewQemuScenarios:
    """Each operation through nova's API, then a look at the console.

    A mixin, so that only its two test classes run the scenarios: with our
    driver every boot's lines stay, oldest first; with nova's own the
    earlier boots are gone.
    """

    compute_driver = base.DRIVER

    def setUp(self):
        super().setUp()
        # fakelibvirt's guest answers ACPI at once; one that ignores it
        # (acpi_ignored) must not hold the test for nova's default 120 s.
        self.flags(wait_soft_reboot_seconds=1, group='libvirt')
        self.qemu = self.useFixture(fake_qemu.FakeQemu(self))
        self.compute = self.start_host('host1',
                                       compute_driver=self.compute_driver)
        self.server = self._create_server(host='host1', networks='none')
        self.uuid = self.server['id']
        self.boots = 0
        self.boot_prints()

    def boot_prints(self):
        """The newest QEMU's guest prints its boot's lines."""
        self.boots += 1
        self.qemu.guest_prints(self.uuid, fake_qemu.boot_lines(self.boots))

    def started_by(self, before, *methods):
        """Exactly one new QEMU since ``before`` starts, through methods."""
        starts = self.qemu.starts[self.uuid]
        self.assertEqual(before + 1, len(starts),
                         'expected one new QEMU start: %s' % starts[before:])
        host, via = starts[-1]
        self.assertEqual('host1', host)
        for method in methods:
            self.assertIn(method, via)
        return via

    def new_qemu(self, operation, *methods):
        """Run operation (nova API calls); it starts one QEMU via methods.

        Then the new boot prints its lines and the console is checked.
        """
        before = len(self.qemu.starts[self.uuid])
        self.server = operation()
        via = self.started_by(before, *methods)
        self.boot_prints()
        self.check_console()
        return via

    def expected_everything(self):
        return fake_qemu.text(self.qemu.printed[self.uuid])

    def expected_newest_boot(self):
        printed = self.qemu.printed[self.uuid]
        return fake_qemu.text(printed[self.qemu.newest_from[self.uuid]:])

    def check_console(self):
        """Overridden: what the console holds after a new QEMU."""
        raise NotImplementedError()

    def keeps_every_boot(self):
        """Our promise: every line of every boot, in order, then the new."""
        self.assertEqual(self.expected_everything(),
                         self.console_output(self.server))

    # -- the operations ----------------------------------------------------

    def test_hard_reboot(self):
        self.new_qemu(lambda: self._reboot_server(self.server, hard=True),
                      '_hard_reboot')

    def test_soft_reboot(self):
        # The guest answers ACPI: nova's own guest.launch, no fallback.
        via = self.new_qemu(lambda: self._reboot_server(self.server),
                            '_soft_reboot')
        self.assertNotIn('_hard_reboot', via)
        self.assertIn(b'ACPI shutdown: goodbye',
                      self.qemu.printed[self.uuid])

    def test_soft_reboot_of_a_guest_ignoring_acpi(self):
        # nova waits wait_soft_reboot_seconds, then reboots hard; the
        # guest went on printing meanwhile (after our rename).
        self.qemu.acpi_ignored = True
        self.new_qemu(lambda: self._reboot_server(self.server),
                      '_hard_reboot')
        self.assertIn(b'ACPI shutdown ignored', self.qemu.printed[self.uuid])

    def test_stop_start(self):
        self.server = self._stop_server(self.server)
        self.new_qemu(lambda: self._start_server(self.server), 'power_on')

    def test_suspend_resume(self):
        self.server = self._suspend_server(self.server)
        self.new_qemu(lambda: self._resume_server(self.server), 'resume')

    def test_rescue_unrescue(self):
        self.new_qemu(lambda: self._rescue_server(self.server), 'rescue')
        self.new_qemu(lambda: self._unrescue_server(self.server),
                      'unrescue')

    def test_rebuild(self):
        self.new_qemu(
            lambda: self._rebuild_server(self.server, REBUILD_IMAGE),
            'spawn')

    def test_cold_snapshot(self):
        # A cold snapshot: managed save, extract, guest.launch.
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')

        def snapshot():
            self._snapshot_server(self.server, 'cold-snapshot')
            self.notifier.wait_for_versioned_notifications(
                'instance.snapshot.end')
            return self._wait_for_server_parameter(
                self.server, {'status': 'ACTIVE',
                              'OS-EXT-STS:task_state': None})

        self.new_qemu(snapshot, '_resume_guest_after_snapshot')

    def test_every_start_in_a_row(self):
        # The history grows across many starts, each kept in its turn.
        self.new_qemu(lambda: self._reboot_server(self.server),
                      '_soft_reboot')
        self.new_qemu(lambda: self._reboot_server(self.server, hard=True),
                      '_hard_reboot')
        self.server = self._stop_server(self.server)
        self.new_qemu(lambda: self._start_server(self.server), 'power_on')
        self.server = self._suspend_server(self.server)
        self.new_qemu(lambda: self._resume_server(self.server), 'resume')
        self.new_qemu(lambda: self._rescue_server(self.server), 'rescue')
        self.new_qemu(lambda: self._unrescue_server(self.server),
                      'unrescue')
        self.assertEqual(7, self.boots)


class NewQemuTest(NewQemuScenarios, base.ConsoleLogNovaTestBase):
    """``consolelog.LibvirtDriver``: every boot stays, oldest first."""

    def check_console(self):
        self.keeps_every_boot()
        # Nothing left behind (a rebuild's chain went through a stash).
        self.assertFalse(self.compute.driver.consolelog.has_stash(self.uuid))
        # nova's length: the last length - 1 lines (the text ends in \n).
        self.assertEqual(
            fake_qemu.text(self.qemu.printed[self.uuid][-5:]),
            self.console_output(self.server, length=6))


class NovaDriverControlTest(NewQemuScenarios,
                            base.ConsoleLogNovaTestBase):
    """nova's own driver: the same scenarios lose every earlier boot.

    Proves the scenarios are a test at all: nova's read works (it serves
    the newest boot) and our check fails on it.
    """

    compute_driver = 'libvirt.LibvirtDriver'

    def check_console(self):
        self.assertEqual(self.expected_newest_boot(),
                         self.console_output(self.server))
        self.assertRaises(AssertionError, self.keeps_every_boot)
