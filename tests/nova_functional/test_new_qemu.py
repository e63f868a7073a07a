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
pass whatever the driver does. ``FakeQemu`` makes the start faithful:

* every ``Domain.createWithFlags`` (``Guest.launch``; ``Domain.create``
  goes through it) first truncates the instance's console exactly as
  virtlogd does (``virtlogd_truncates``), then opens ``console.log`` for
  the new QEMU the way virtlogd holds it: one descriptor per QEMU, which
  keeps writing into the file wherever it is renamed. The guest's lines are
  written through that descriptor;
* a started domain gets a new domain id, as in libvirt (fakelibvirt leaves
  -1 after the first shutdown, and nova's soft reboot compares ids);
* an ACPI shutdown (``Domain.shutdown``) lets the guest print its last
  line before it stops, which must not be lost either (our driver renames
  before nova asks the guest to shut down);
* each start records the nova driver methods on its stack, so a test
  proves it took the start path it claims (soft reboot through
  ``_soft_reboot``'s own ``guest.launch``, not the hard-reboot fallback).

nova's own read (the control class) looks for the console path in the
domain XML; fakelibvirt's names a relative ``dummy.log``, which nova never
finds. ``FakeQemu`` names ``<instance dir>/console.log`` as nova's real XML
does, so the control shows what nova really serves: the newest boot only.
"""

import os
import sys

import fixtures

from tests.nova_functional import base

NOVA_LIBVIRT_DRIVER = os.path.join('nova', 'virt', 'libvirt', 'driver.py')
FAKE = 'nova.tests.fixtures.libvirt.Domain.'
# A raw image of nova's Glance fixture other than the boot image.
REBUILD_IMAGE = '76fa36fc-c930-4bf3-8c8a-ea2a2420deb6'
LINES_PER_BOOT = 40


def text(lines):
    return b''.join(line + b'\n' for line in lines).decode()


def boot_lines(boot):
    """The ``LINES_PER_BOOT`` lines the guest prints at boot ``boot``."""
    return [b'boot %02d line %04d' % (boot, i)
            for i in range(LINES_PER_BOOT)]


def _nova_methods_on_stack():
    """Names of nova libvirt driver methods calling this (why it starts)."""
    names = set()
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(NOVA_LIBVIRT_DRIVER):
            names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


class FakeQemu(fixtures.Fixture):
    """QEMU starts and shutdowns of fakelibvirt that behave like libvirt's.

    :param test: the ``ConsoleLogNovaTestBase`` whose hosts run the domains.
    """

    def __init__(self, test):
        super().__init__()
        self.test = test
        # instance uuid -> [(host, nova methods on the stack)], one a start
        self.starts = {}
        # instance uuid -> every line the guest printed, in order
        self.printed = {}
        # instance uuid -> index in printed[uuid] of the newest QEMU's first
        self.newest_from = {}
        # instance uuid -> virtlogd's descriptor of the newest QEMU's log
        self.logs = {}
        self.acpi_ignored = False

    def _setUp(self):
        create_with_flags = base.fakelibvirt.Domain.createWithFlags
        shutdown = base.fakelibvirt.Domain.shutdown
        xml_desc = base.fakelibvirt.Domain.XMLDesc
        fake = self

        def start(domain, flags):
            # libvirt: virtlogd truncates, then the new QEMU runs.
            fake.qemu_starts(domain)
            create_with_flags(domain, flags)
            domain._id = domain._connection._id_counter - 1

        def acpi_shutdown(domain):
            uuid = domain.UUIDString()
            if fake.acpi_ignored:
                fake.guest_prints(uuid, [b'ACPI shutdown ignored'])
                return
            fake.guest_prints(uuid, [b'ACPI shutdown: goodbye'])
            shutdown(domain)

        def xml_with_console_path(domain, flags):
            xml = xml_desc(domain, flags)
            host = fake.test.host_of_connection(domain._connection)
            if host is None:
                return xml
            path = os.path.join(fake.test.instance_dir(
                host, domain.UUIDString()), 'console.log')
            return xml.replace(
                "<source path='dummy.log'/>", "<source path='%s'/>" % path)

        self.useFixture(fixtures.MonkeyPatch(FAKE + 'createWithFlags', start))
        self.useFixture(fixtures.MonkeyPatch(FAKE + 'shutdown',
                                             acpi_shutdown))
        self.useFixture(fixtures.MonkeyPatch(FAKE + 'XMLDesc',
                                             xml_with_console_path))
        self.addCleanup(self._close_logs)

    def _close_logs(self):
        for log in self.logs.values():
            log.close()
        self.logs.clear()

    def qemu_starts(self, domain):
        uuid = domain.UUIDString()
        host = self.test.host_of_connection(domain._connection)
        self.starts.setdefault(uuid, []).append(
            (host, _nova_methods_on_stack()))
        self.test.virtlogd_truncates(host, uuid)
        old = self.logs.pop(uuid, None)
        if old is not None:
            old.close()
        directory = self.test.instance_dir(host, uuid)
        os.makedirs(directory, exist_ok=True)
        self.logs[uuid] = open(os.path.join(directory, 'console.log'), 'ab')
        self.newest_from[uuid] = len(self.printed.setdefault(uuid, []))

    def guest_prints(self, uuid, lines):
        """The running QEMU's output, through virtlogd's descriptor."""
        log = self.logs[uuid]
        log.write(text(lines).encode())
        log.flush()
        self.printed[uuid].extend(lines)


class CountingGuestTestBase(base.ConsoleLogNovaTestBase):
    """One server whose every boot prints numbered lines through FakeQemu.

    For the scenarios that move the guest between hosts (resize, cold
    migration, shelve): ``boot`` creates it, ``boot_prints`` is the
    newest QEMU's output, ``printed`` all it printed so far.
    """

    def setUp(self):
        super().setUp()
        self.qemu = self.useFixture(FakeQemu(self))
        self.boots = 0

    def boot(self, hostname='host1'):
        self.server = self._create_server(host=hostname, networks='none')
        self.uuid = self.server['id']
        self.boot_prints()

    def boot_prints(self):
        self.boots += 1
        self.qemu.guest_prints(self.uuid, boot_lines(self.boots))

    def printed(self):
        return list(self.qemu.printed[self.uuid])

    def consolelog(self, hostname):
        return self.computes[hostname].driver.consolelog


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
        self.qemu = self.useFixture(FakeQemu(self))
        self.compute = self.start_host('host1',
                                       compute_driver=self.compute_driver)
        self.server = self._create_server(host='host1', networks='none')
        self.uuid = self.server['id']
        self.boots = 0
        self.boot_prints()

    def boot_prints(self):
        """The newest QEMU's guest prints its boot's lines."""
        self.boots += 1
        self.qemu.guest_prints(self.uuid, boot_lines(self.boots))

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
        return text(self.qemu.printed[self.uuid])

    def expected_newest_boot(self):
        printed = self.qemu.printed[self.uuid]
        return text(printed[self.qemu.newest_from[self.uuid]:])

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
            text(self.qemu.printed[self.uuid][-5:]),
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
