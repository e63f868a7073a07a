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

"""QEMU starts in fakelibvirt that do to the console what libvirt's do.

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

nova's own read (test_new_qemu's control class) looks for the console
path in the domain XML; fakelibvirt's names a relative ``dummy.log``,
which nova never finds. ``FakeQemu`` names ``<instance dir>/console.log``
as nova's real XML does, so the control shows what nova really serves:
the newest boot only.

Used by the new-QEMU, cold-migration, shelve and evacuation tests; no
tests here.
"""

import os
import sys

import fixtures

from tests.nova_functional import base

NOVA_LIBVIRT_DRIVER = os.path.join('nova', 'virt', 'libvirt', 'driver.py')
FAKE = 'nova.tests.fixtures.libvirt.Domain.'
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
