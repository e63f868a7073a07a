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

"""nova_consolelog.virt on libvirt's in-process test driver.

``test:///default`` is real libvirt-python and real libvirt: it defines,
starts, pauses, destroys and undefines domains and emits lifecycle events.
Its state is shared by every connection of the process, so each test uses
its own domain UUIDs and undefines what it defined.
"""

import threading
import uuid as uuidlib

import libvirt
from oslotest import base

from nova_consolelog import exception
from nova_consolelog import virt

LOG_PATH = '/var/lib/nova/instances/%s/console.log'


def domain_xml(uuid, devices=''):
    return ('<domain type="test"><name>nclog-%s</name><uuid>%s</uuid>'
            '<memory>8192</memory><os><type>hvm</type></os>'
            '<devices>%s</devices></domain>' % (uuid[:8], uuid, devices))


# nova's shapes (LibvirtDriver._create_consoles): pty + virtlogd, tcp
# serials with serial_console enabled (only port 0 logs), file serials.
PTY = ('<serial type="pty"><log file="{log}" append="off"/>'
       '<target port="0"/></serial>'
       '<console type="pty"><target type="serial" port="0"/></console>')
TCP = ('<serial type="tcp"><source mode="bind" host="127.0.0.1" '
       'service="10001"/><protocol type="raw"/>'
       '<target port="1"/></serial>'
       '<serial type="tcp"><source mode="bind" host="127.0.0.1" '
       'service="10000"/><protocol type="raw"/>'
       '<log file="{log}" append="off"/><target port="0"/></serial>')
FILE = ('<serial type="file"><source path="{log}"/>'
        '<target port="0"/></serial>')
NONE = '<serial type="pty"><target port="0"/></serial>'


class TestDriverTestCase(base.BaseTestCase):
    """Base class: a test:///default connection and cleanup helpers."""

    def setUp(self):
        super().setUp()
        # libvirt prints every error to stderr unless a handler takes it;
        # the errors the tests provoke are asserted, not printed.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open('test:///default')
        self.addCleanup(self.conn.close)

    def define(self, devices='', start=False):
        uuid = str(uuidlib.uuid4())
        dom = self.conn.defineXML(
            domain_xml(uuid, devices.format(log=LOG_PATH % uuid)))
        self.addCleanup(self._remove, uuid)
        if start:
            dom.create()
        return uuid, dom

    def _remove(self, uuid):
        try:
            dom = self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            return
        if dom.isActive():
            dom.destroy()
        dom.undefine()


class ConsoleLogPathTest(TestDriverTestCase):

    def test_shapes_on_defined_domains(self):
        for name, devices, expected in [
                ('pty', PTY, LOG_PATH),
                ('tcp, port 0 logs', TCP, LOG_PATH),
                ('file', FILE, LOG_PATH),
                ('no log', NONE, None),
                ('no devices', '', None)]:
            uuid, dom = self.define(devices)
            want = expected and expected % uuid
            self.assertEqual(want, virt.console_log_path(dom), name)
            self.assertEqual(want, virt.console_log_path(dom.XMLDesc(0)),
                             name)

    def test_running_domain_pty_source_is_not_the_log(self):
        uuid, dom = self.define(PTY, start=True)
        self.assertEqual(LOG_PATH % uuid, virt.console_log_path(dom))

    def test_serial_port_0_wins_over_other_ports_and_consoles(self):
        xml = domain_xml(str(uuidlib.uuid4()), (
            '<console type="file"><source path="/c.log"/></console>'
            '<serial type="tcp"><log file="/port1.log"/>'
            '<target port="1"/></serial>'
            '<serial type="tcp"><log file="/port0.log"/>'
            '<target port="0"/></serial>'))
        self.assertEqual('/port0.log', virt.console_log_path(xml))

    def test_fakelibvirt_file_console_relative_path(self):
        # fakelibvirt's XML; the test driver itself rewrites consoles.
        xml = domain_xml(str(uuidlib.uuid4()), (
            '<console type="file"><source path="dummy.log"/>'
            '<target port="0"/></console>'))
        self.assertEqual('dummy.log', virt.console_log_path(xml))
        self.assertEqual('dummy.log',
                         virt.console_log_path(xml.encode('utf-8')))

    def test_bad_input(self):
        for bad in ['<domain', '<network><name>x</name></network>',
                    b'\xff<domain/>', 42, None]:
            self.assertRaises(exception.InvalidInput,
                              virt.console_log_path, bad)


class MigrationFlagsTest(base.BaseTestCase):

    NOVA = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
            libvirt.VIR_MIGRATE_PERSIST_DEST |
            libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    WITHOUT = NOVA & ~libvirt.VIR_MIGRATE_UNDEFINE_SOURCE

    def test_table(self):
        for flags, enabled, expected in [
                (self.NOVA, True, self.WITHOUT),
                (self.NOVA, False, self.NOVA),
                (self.WITHOUT, True, self.WITHOUT),
                (self.WITHOUT, False, self.WITHOUT),
                (0, True, 0)]:
            self.assertEqual(expected, virt.migration_flags(flags, enabled),
                             (flags, enabled))

    def test_check_flags(self):
        self.assertTrue(virt.check_flags(self.WITHOUT))
        with self.assertLogs('nova_consolelog.virt', 'WARNING') as logs:
            self.assertFalse(virt.check_flags(self.NOVA))
        self.assertIn('console log will not be migrated',
                      logs.output[0])


class CountingDomain:
    """A real domain that counts ``state()`` calls."""

    def __init__(self, dom):
        self._dom = dom
        self.state_calls = 0

    def state(self):
        self.state_calls += 1
        return self._dom.state()

    def __getattr__(self, name):
        return getattr(self._dom, name)


class NoEventsConnection:
    """Fault injection: event registration fails (no event loop)."""

    def __init__(self, conn):
        self._conn = conn

    def domainEventRegisterAny(self, *args):
        raise libvirt.libvirtError('no event implementation')

    def __getattr__(self, name):
        return getattr(self._conn, name)


class WaitForShutoffTest(TestDriverTestCase):

    def setUp(self):
        virt.EventLoop.start()
        super().setUp()

    def _later(self, func, delay=0.2):
        timer = threading.Timer(delay, func)
        timer.start()
        self.addCleanup(timer.join)

    def test_event_wakes_the_wait(self):
        _uuid, dom = self.define(PTY, start=True)
        counting = CountingDomain(dom)
        self._later(dom.destroy)
        # Polling alone would take 60 s: True here means the event woke it
        # (one state() before, one after the event).
        self.assertTrue(virt.wait_for_shutoff(
            self.conn, counting, timeout=60, poll_interval=60))
        self.assertEqual(2, counting.state_calls)

    def test_polling_without_events(self):
        _uuid, dom = self.define(PTY, start=True)
        self._later(dom.destroy)
        self.assertTrue(virt.wait_for_shutoff(
            NoEventsConnection(self.conn), dom, timeout=30,
            poll_interval=0.05))
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF, dom.state()[0])

    def test_polling_without_connection(self):
        _uuid, dom = self.define(PTY, start=True)
        self._later(dom.destroy)
        self.assertTrue(virt.wait_for_shutoff(
            None, dom, timeout=30, poll_interval=0.05))

    def test_already_shut_off(self):
        _uuid, dom = self.define(PTY)
        self.assertTrue(virt.wait_for_shutoff(self.conn, dom, timeout=1))

    def test_timeout_on_running_domain(self):
        _uuid, dom = self.define(PTY, start=True)
        with self.assertLogs('nova_consolelog.virt', 'WARNING'):
            self.assertFalse(virt.wait_for_shutoff(
                self.conn, dom, timeout=0.3, poll_interval=0.05))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, dom.state()[0])

    def test_paused_domain_is_not_shut_off(self):
        _uuid, dom = self.define(PTY, start=True)
        dom.suspend()
        with self.assertLogs('nova_consolelog.virt', 'WARNING'):
            self.assertFalse(virt.wait_for_shutoff(
                self.conn, dom, timeout=0.2, poll_interval=0.05))

    def test_vanished_domain_counts_as_stopped(self):
        _uuid, dom = self.define(PTY, start=True)

        def destroy_and_undefine():
            dom.destroy()
            dom.undefine()
        self._later(destroy_and_undefine)
        self.assertTrue(virt.wait_for_shutoff(
            self.conn, dom, timeout=30, poll_interval=0.05))

    def test_event_loop_start_is_idempotent(self):
        virt.EventLoop.start()
        virt.EventLoop.start()
        self.assertTrue(virt.EventLoop.running())


class ReaperTest(TestDriverTestCase):

    HOST = 'src'

    def test_decisions(self):
        # (name, state, instance host, stash age, expected action)
        table = [
            ('running, moved', 'running', 'dst', None, virt.KEPT),
            ('paused, moved', 'paused', 'dst', None, virt.KEPT),
            ('shut off, moved, handed over', 'shutoff', 'dst', None,
             virt.UNDEFINED),
            ('shut off, still ours', 'shutoff', 'src', None, virt.KEPT),
            ('shut off, moved, stash pending', 'shutoff', 'dst', 10,
             virt.KEPT),
            ('shut off, moved, stash expired', 'shutoff', 'dst', 100,
             virt.UNDEFINED),
            ('shut off, unknown instance', 'shutoff', None, None,
             virt.KEPT),
        ]
        hosts, ages, expected = {}, {}, {}
        for name, state, owner, age, action in table:
            uuid, dom = self.define(PTY, start=state != 'shutoff')
            if state == 'paused':
                dom.suspend()
            hosts[uuid], ages[uuid], expected[uuid] = owner, age, (
                name, action)

        results = virt.Reaper(
            self.conn, self.HOST, hosts.get, ages.get, stash_expiry=60).run()

        by_uuid = {r.uuid: r for r in results}
        for uuid, (name, action) in expected.items():
            self.assertEqual(action, by_uuid[uuid].action,
                             '%s: %s' % (name, by_uuid[uuid].reason))
            defined = uuid in {d.UUIDString()
                               for d in self.conn.listAllDomains(0)}
            self.assertEqual(action != virt.UNDEFINED, defined, name)

    def test_reasons(self):
        uuid, _dom = self.define(PTY)
        [result] = [r for r in virt.Reaper(
            self.conn, self.HOST, {uuid: 'dst'}.get, {uuid: 5}.get,
            stash_expiry=60).run() if r.uuid == uuid]
        self.assertEqual(
            virt.Reaped(uuid, virt.KEPT, 'instance on dst, stash pending'),
            result)

    def test_expiry_is_the_callers(self):
        # No fallback to a global configuration: the caller says.
        self.assertRaises(TypeError, virt.Reaper, self.conn, self.HOST,
                          dict().get, dict().get)
        reaper = virt.Reaper(self.conn, self.HOST, dict().get, dict().get,
                             stash_expiry=123)
        self.assertEqual(123, reaper.stash_expiry)

    def test_failing_callback_is_reported_not_raised(self):
        uuid, _dom = self.define(PTY)

        def broken(_uuid):
            raise RuntimeError('database down')
        with self.assertLogs('nova_consolelog.virt', 'WARNING'):
            results = virt.Reaper(
                self.conn, self.HOST, broken, dict().get, 60).run()
        mine = [r for r in results if r.uuid == uuid]
        self.assertEqual([virt.Reaped(uuid, virt.FAILED, 'database down')],
                         mine)
        self.conn.lookupByUUIDString(uuid)  # still defined

    def test_instance_lock_held_around_decision(self):
        uuid, _dom = self.define(PTY)
        events = []

        class Lock:
            def __init__(self, u):
                self.u = u

            def __enter__(self):
                events.append(('lock', self.u))

            def __exit__(self, *exc):
                events.append(('unlock', self.u))

        def instance_host(u):
            events.append(('ask', u))
            return 'dst'
        virt.Reaper(self.conn, self.HOST, instance_host, dict().get, 60,
                    instance_lock=Lock).run()
        mine = [e for e in events if e[1] == uuid]
        self.assertEqual([('lock', uuid), ('ask', uuid), ('unlock', uuid)],
                         mine)
        self.assertRaises(libvirt.libvirtError,
                          self.conn.lookupByUUIDString, uuid)


class FlagsRejectedDomain:
    """Fault injection: a domain whose undefineFlags() libvirt rejects."""

    def __init__(self, dom):
        self._dom = dom

    def undefineFlags(self, flags):
        raise libvirt.libvirtError('unsupported flags')

    def __getattr__(self, name):
        return getattr(self._dom, name)


class UndefineTest(TestDriverTestCase):

    def test_undefine_with_flags(self):
        uuid, dom = self.define(PTY)
        virt.undefine(dom)
        self.assertRaises(libvirt.libvirtError,
                          self.conn.lookupByUUIDString, uuid)

    def test_falls_back_to_plain_undefine(self):
        uuid, dom = self.define(PTY)
        virt.undefine(FlagsRejectedDomain(dom))
        self.assertRaises(libvirt.libvirtError,
                          self.conn.lookupByUUIDString, uuid)
