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

"""nova 34.0.0's own services on the real libvirt driver and real QEMU.

nova's functional harness (``_IntegratedTestBase``: the API through
wsgi-intercept, conductor, scheduler, placement, the Glance/Neutron/Cinder
fixtures, nova's fake RPC driver) with two nova-compute services on the
**real** libvirt driver -- ours (``consolelog.LibvirtDriver``) or nova's own
(``libvirt.LibvirtDriver``) -- each against its own libvirtd + virtlogd in
a network and UTS namespace of its own (``tests/e2e/hosts.py``). The guest
is the e2e boot sector that prints a counter to COM1, given one MBR
partition entry and served by the Glance fixture. Everything the tests do
goes through nova's API.

nova's test harness is built to keep real drivers out; what this module
undoes or adds, each a fact about nova 34.0.0 (listed with the reasons in
doc/source/contributor/testing.rst):

* ``nova.test.TestCase`` poisons ``Host._init_events`` (``sys.exit``),
  ``os.uname``, ``psutil.net_if_addrs``, reads under ``/sys`` and the
  ``libvirt`` import: the originals are put back (``libvirt`` is imported
  here, before the fixture that forbids it runs);
* privsep runs in-process as root (``sys_admin_pctxt.client_mode =
  False``), as nova's own ``PrivsepFixture`` does;
* ``Host._init_events`` and the eventlet event handler spawn two endless
  loops into the default thread pool, which the test cleanup would wait
  for forever: they start outside the pools;
* ``nova.virt.node.get_local_node_uuid`` caches one uuid per process: each
  compute gets its own while it starts;
* ``[libvirt] live_migration_inbound_addr`` is set to the destination's
  address just before each migration (one CONF for both computes);
* ``VIR_MIGRATE_UNSAFE`` joins the live-migration flags: libvirt refuses a
  shared instance path on a local filesystem.
"""

import importlib
import io
import os
import shutil
import struct
import sys
import threading
import time
from unittest import mock

import nova.tests.functional  # noqa: F401  (nova's monkey patching first)

import builtins
import glob

import fixtures
import libvirt  # the real one, before nova's fixtures forbid the import
from nova import conf as nova_conf
from nova import context as nova_context  # noqa: F401  (for the tests)
import nova.privsep
from nova import rpc as nova_rpc
from nova.tests.functional import integrated_helpers
from nova import thread_pool_factory
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import migration as libvirt_migration
from oslo_log import log as logging
import oslo_messaging as messaging
import psutil
import testtools

from nova_consolelog import nova_driver
from nova_consolelog import objects as cl_objects

from tests.e2e import guest
from tests.e2e import hosts
from tests.nova_functional import base as nova_functional

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF

# nova.test.TestCase copies oslo.versionedobjects' class table (one for
# every registry in the process) at set-up and puts the copy back at
# cleanup: objects first registered during a test vanish for the next
# one. Register ours before any test starts.
cl_objects.register_all()

# nova's API fixture looks for api-paste.ini under site-packages; the
# wheel installs it under <prefix>/etc/nova.
os.environ.setdefault('OS_WSGI__API_PASTE_CONFIG', os.path.join(
    sys.prefix, 'etc', 'nova', 'api-paste.ini'))

# nova's RPC (and so ours, and our bulk channel) on the local RabbitMQ.
RABBIT_URL = os.environ.get('NOVA_CONSOLELOG_TRANSPORT_URL',
                            'rabbit://guest:guest@127.0.0.1:5672/')

OURS = 'consolelog.LibvirtDriver'
NOVAS = 'libvirt.LibvirtDriver'

# Names of their own, so that tests/e2e (nclog-e2e-*, 198.18.0.0/30,
# /var/tmp/nclog-e2e) can exist next to this suite.
ROOT = '/var/tmp/nclog-nova-e2e'
NETNS_PREFIX = 'nclne2e-'  # + host name: a veth name, 15 bytes at most
SHARED_INSTANCES = os.path.join(ROOT, 'shared-instances')
HOSTS = (('alpha', '198.18.1.1'), ('beta', '198.18.1.2'))

# One counter line per BIOS tick (~18 lines, ~250 bytes a second): every
# scenario's whole history stays far below nova's 100 KiB console read.
LINES_PER_TICK = 1
DISK_SIZE = 1024 * 1024
# Lines a boot prints before the next operation (~18 lines/s).
LINES_PER_BOOT = 20

# What nova.test.TestCase poisons, as it was before (see the module doc).
ORIGINALS = {
    'os.uname': os.uname,
    'psutil.net_if_addrs': psutil.net_if_addrs,
    'os.path.isdir': os.path.isdir,
    'os.listdir': os.listdir,
    'builtins.open': builtins.open,
    'glob.glob': glob.glob,
    'glob.iglob': glob.iglob,
}
_INIT_EVENTS = libvirt_host.Host._init_events

# A compute's stop runs nova's graceful shutdown in a thread of its own
# (Service._run_manager_graceful_shutdown), which ends in cleanup_host and
# shutdown_all_executors(). On a real driver cleanup_host takes a while, and
# the thread can outlive stop(), the service's fixture and the test: the
# executors of every later test in the process then refuse to start
# ("shutdown has been started"). ServiceFixture neutralises the call only
# while the service's fixture lives; here it is a no-op for the whole
# process (nova's IsolatedExecutorFixture cleans each test's executors up).
thread_pool_factory.shutdown_all_executors = lambda: None
_PREPARE_FLAGS = libvirt_driver.LibvirtDriver._prepare_migration_flags
_DISK_INFO = libvirt_driver.LibvirtDriver._get_instance_disk_info_from_config
_UPDATED_XML = libvirt_migration.get_updated_guest_xml


def check_counters(output, first=1):
    """The counters of console ``output`` and what is wrong with them.

    The one check of every scenario: every counter from ``first`` (the
    guest's first line after its first boot) to the last must be present
    exactly once and in order. Returns ``(values, problems)``; ``problems``
    is empty when the history is whole.
    """
    if isinstance(output, str):
        output = output.encode('utf-8')
    values = guest.counters(output)
    problems = []
    if not values:
        problems.append('no counter lines')
    elif values[0] != first:
        problems.append('counters %d..%d missing (history lost)'
                        % (first, values[0] - 1))
    problems.extend(guest.check_sequence(values))
    return values, problems


def check_boots(output):
    """The runs of counters (one per boot) and what is wrong with them.

    A run starts where the counter goes back to 1; every run must be
    1..k, whole and in order. Returns ``(runs, problems)``, ``runs`` as
    ``(first, last)`` pairs.
    """
    if isinstance(output, str):
        output = output.encode('utf-8')
    values = guest.counters(output)
    runs, problems, current = [], [], []
    for value in values + [None]:
        if current and (value is None or value == 1):
            if current[0] != 1:
                problems.append('a boot starting at %d (history lost)'
                                % current[0])
            problems.extend(guest.check_sequence(current))
            runs.append((current[0], current[-1]))
            current = []
        if value is not None:
            current.append(value)
    if not runs:
        problems.append('no counter lines')
    return runs, problems


def describe(values):
    if not values:
        return 'none'
    return '%d..%d (%d lines)' % (values[0], values[-1], len(values))


def build_disk_image(directory):
    """The counter guest as a raw disk: boot sector plus one partition.

    nova's deep image inspection rejects a boot sector without a partition
    ("GPT MBR has no partitions defined"); one Linux partition entry
    covering the rest of the 1 MiB disk satisfies it and changes nothing
    for the BIOS, which only runs the code.
    """
    floppy = guest.build_boot_image(directory, lines_per_tick=LINES_PER_TICK)
    with open(floppy, 'rb') as f:
        sector = bytearray(f.read(512))
    if any(sector[446:510]):
        raise RuntimeError('the boot code reaches into the partition table')
    sectors = DISK_SIZE // 512
    # status, CHS start (0/0/2), type 0x83, CHS end, LBA start, LBA count
    sector[446:462] = struct.pack('<B3BB3BII', 0x00, 0, 2, 0, 0x83,
                                  0xfe, 0xff, 0xff, 1, sectors - 1)
    path = os.path.join(directory, 'disk.img')
    with open(path, 'wb') as f:
        f.write(bytes(sector))
        f.truncate(DISK_SIZE)
    return path


class NovaHost(hosts.Host):
    """A tests/e2e host under this suite's names, in a UTS namespace.

    nova names the hypervisor after libvirt's ``getHostname()``: each
    libvirtd gets the compute's host name in a UTS namespace of its own,
    or both computes report the same hypervisor.
    """

    root_dir = ROOT
    netns_prefix = NETNS_PREFIX
    common_instances = None

    def command(self, script):
        return ['ip', 'netns', 'exec', self.netns, 'unshare', '--uts',
                'sh', '-ec', 'hostname %s\n%s' % (self.name, script)]


# libvirt runs this hook at the start of an incoming migration; a failure
# refuses it. Installed before libvirtd starts (libvirtd looks for hooks
# only then), it refuses while the host's refuse-incoming file exists.
QEMU_HOOK = """#!/bin/sh
if [ "$2" = migrate ] && [ -e %(flag)s ]; then
    echo "incoming migration refused by the test" >&2
    exit 1
fi
exit 0
"""


class NovaHosts(fixtures.Fixture):
    """Hosts ``alpha`` and ``beta`` and the guest's disk image.

    Torn down on cleanup, also when the set-up fails halfway; leftovers of
    a killed run are removed at the next start.
    """

    def _setUp(self):
        hosts.check_requirements()
        hosts.cleanup_leftovers(ROOT, NETNS_PREFIX)
        os.makedirs(SHARED_INSTANCES)
        if not os.environ.get('NCLOG_E2E_KEEP'):
            self.addCleanup(shutil.rmtree, ROOT, True)
        self.image = build_disk_image(ROOT)
        (a_name, a_addr), (b_name, b_addr) = HOSTS
        self.hosts = {
            a_name: NovaHost(a_name, 11, a_addr, b_addr),
            b_name: NovaHost(b_name, 12, b_addr, a_addr),
        }
        a, b = self.hosts[a_name], self.hosts[b_name]
        for host in (a, b):
            self.addCleanup(hosts._run, 'ip', 'netns', 'del', host.netns,
                            check=False)
            hosts._run('ip', 'netns', 'add', host.netns)
            hosts._run('ip', '-n', host.netns, 'link', 'set', 'lo', 'up')
        hosts._run('ip', 'link', 'add', a.veth, 'type', 'veth', 'peer',
                   'name', b.veth)
        for host in (a, b):
            hosts._run('ip', 'link', 'set', host.veth, 'netns', host.netns)
            hosts._run('ip', '-n', host.netns, 'addr', 'add',
                       host.address + '/30', 'dev', host.veth)
            hosts._run('ip', '-n', host.netns, 'link', 'set', host.veth,
                       'up')
            host.write_config()
            hooks = os.path.join(host.dirs['/etc/libvirt'], 'hooks')
            os.makedirs(hooks)
            with open(os.path.join(hooks, 'qemu'), 'w') as f:
                f.write(QEMU_HOOK % {'flag': self.refuse_flag(host)})
            os.chmod(os.path.join(hooks, 'qemu'), 0o755)
        for host in (a, b):
            self.addCleanup(host.stop)
            host.start()
        for host in (a, b):
            host.wait_ready()

    @staticmethod
    def refuse_flag(host):
        return os.path.join(host.root, 'refuse-incoming')

    def refuse_incoming(self, name, refuse=True):
        """Make ``name``'s libvirtd refuse (or accept) incoming guests."""
        flag = self.refuse_flag(self.hosts[name])
        if refuse:
            open(flag, 'w').close()
        elif os.path.exists(flag):
            os.unlink(flag)

    def remove_domains(self):
        """Destroy and undefine every domain on both hosts."""
        for host in self.hosts.values():
            try:
                domains = host.conn.listAllDomains(0)
            except libvirt.libvirtError:
                continue
            for dom in domains:
                try:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                except libvirt.libvirtError as e:
                    LOG.warning('Removing domain %s on %s: %s',
                                dom.UUIDString(), host.name, e)


def _init_events_outside_pools(host):
    """nova's ``Host._init_events`` with its endless loops off the pools.

    The eventlet event handler's dispatch loop and the connection-event
    loop never end; spawned into nova's default pool, the test cleanup
    waits for them forever. As daemon threads (green threads under
    eventlet: threading is monkey-patched there) they are left behind.
    """
    def spawn(func, *args, **kwargs):
        thread = threading.Thread(target=func, args=args, kwargs=kwargs,
                                  daemon=True)
        thread.start()

    with mock.patch.object(thread_pool_factory, 'spawn', spawn):
        return _INIT_EVENTS(host)


def _flags_with_unsafe(driver):
    """nova's migration flags plus ``VIR_MIGRATE_UNSAFE``.

    The shared instance path here is a local directory: libvirt refuses it
    ("Migration without shared storage is unsafe") unless told.
    """
    live, block = _PREPARE_FLAGS(driver)
    return (live | libvirt.VIR_MIGRATE_UNSAFE,
            block | libvirt.VIR_MIGRATE_UNSAFE)


class NovaE2ETestCase(integrated_helpers._IntegratedTestBase,
                      integrated_helpers.InstanceHelperMixin):
    """Two real computes, ``alpha`` and ``beta``; see the module doc.

    ``DRIVERS`` names each host's compute driver. The hosts (libvirtd and
    virtlogd) start once per class; nova's services once per test.
    """

    ADMIN_API = True
    microversion = '2.74'
    # Casts stay casts: os-migrateLive returns at once and the migration
    # runs while the test reads the console.
    CAST_AS_CALL = False
    DRIVERS = {'alpha': OURS, 'beta': OURS}
    #: Tests named test_control_* run nova's own driver on both computes.
    CONTROL = {'alpha': NOVAS, 'beta': NOVAS}
    #: One instances path for both computes, or one each (block migration).
    SHARED = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        fixture = NovaHosts()
        fixture.setUp()  # cleans up after itself when it fails
        cls.addClassCleanup(fixture.cleanUp)
        cls.cluster = fixture

    def setUp(self):
        if not os.path.exists(os.environ['OS_WSGI__API_PASTE_CONFIG']):
            self.fail('nova api-paste.ini not found at %s: run these tests '
                      'with tox -e nova-e2e' %
                      os.environ['OS_WSGI__API_PASTE_CONFIG'])
        # Registered first, so run last: after nova's services stopped.
        self.addCleanup(self._remove_instances)
        for name in self.cluster.hosts:
            self.addCleanup(self.cluster.refuse_incoming, name, False)
        self.addCleanup(self.cluster.remove_domains)
        super().setUp()
        self.hosts = self.cluster.hosts
        if self._testMethodName.startswith('test_control'):
            self.DRIVERS = self.CONTROL
        for name, original in ORIGINALS.items():
            self.useFixture(fixtures.MonkeyPatch(name, original))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host._init_events',
            _init_events_outside_pools))
        self.useFixture(fixtures.MockPatchObject(
            nova.privsep.sys_admin_pctxt, 'client_mode', False))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_prepare_migration_flags', _flags_with_unsafe))
        if not self.SHARED:
            self._per_host_instance_paths()
        self.flags(virt_type='qemu', cpu_mode='none',
                   hw_machine_type=['x86_64=pc'],
                   live_migration_scheme='tcp', group='libvirt')
        self.flags(enabled=False, group='vnc')
        # A peer that does not answer must not hold a test for a minute.
        self.flags(rpc_timeout=3, group='consolelog')
        self.addOnException(self._attach_logs)
        self.timings = []
        self.step_seconds = []
        self.migration_steps = []
        for name in self.hosts:
            self.start_host(name)
        self.flavor_id = self._create_flavor(
            memory_mb=64, vcpu=1, disk=1, ephemeral=0, swap=0)
        self.image_id = self._create_guest_image()

    def _per_host_instance_paths(self):
        """Each compute its own instances path, in one process and CONF.

        nova_functional's ``PerHostInstancePaths`` makes nova's path helpers
        answer per driver; its stand-in for the disk list (fakelibvirt has
        no disk files) goes: here the disks are real and block migration
        copies them. nova assumes one instances path everywhere and never
        rewrites the disk and console paths of the domain XML for the
        destination (``migration.get_updated_guest_xml``): mapped here. The
        image cache is one absolute directory (nova joins it to the
        instances path of whichever compute started last).
        """
        self.useFixture(nova_functional.PerHostInstancePaths())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_get_instance_disk_info_from_config', _DISK_INFO))
        by_address = {h.address: self.instances_path(name)
                      for name, h in self.hosts.items()}

        def get_updated_guest_xml(instance, guest, migrate_data, *args,
                                  **kwargs):
            xml = _UPDATED_XML(instance, guest, migrate_data, *args,
                               **kwargs)
            source = nova_functional._instances_path()
            dest = by_address[migrate_data.target_connect_addr]
            return xml.replace(source + '/', dest + '/')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.migration.get_updated_guest_xml',
            get_updated_guest_xml))
        self.flags(subdirectory_name=os.path.join(ROOT, '_base'),
                   group='image_cache')

    def _setup_services(self):
        self._use_rabbitmq()
        super()._setup_services()
        # nova's harness points CONF at its cell's fake:// URL; our driver
        # derives the bulk channel's broker from CONF.
        self.flags(transport_url=RABBIT_URL)

    def _use_rabbitmq(self):
        """nova's RPC on RabbitMQ instead of its harness's fake driver.

        ``RPCFixture`` collapses every transport nova asks for (one per
        cell) into one ``fake:`` bus; here they are one RabbitMQ transport,
        on an exchange of this process's own so that other suites on the
        broker are not disturbed.
        """
        self.flags(transport_url=RABBIT_URL,
                   control_exchange='nova-e2e-%d' % os.getpid())
        transport = messaging.get_rpc_transport(
            CONF, url=RABBIT_URL,
            allowed_remote_exmods=nova_rpc.get_allowed_exmods())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.rpc.create_transport', lambda url: transport))
        nova_rpc.cleanup()
        nova_rpc.init(CONF)
        self.assertIs(transport, nova_rpc.TRANSPORT)
        self.assertEqual('RabbitDriver', type(transport._driver).__name__)
        # The harness's CheatingSerializer puts the targeted cell's
        # database and transport objects into every message (all services
        # share a process); JSON cannot carry them: a token can.
        connections = {}
        serialize = nova_rpc.RequestContextSerializer.serialize_context
        deserialize = nova_rpc.RequestContextSerializer.deserialize_context

        def serialize_context(serializer, context):
            values = serialize(serializer, context)
            for key in ('db_connection', 'mq_connection'):
                obj = getattr(context, key, None)
                values[key] = None
                if obj is not None:
                    values[key] = 'nova-e2e-%x' % id(obj)
                    connections[values[key]] = obj
            return values

        def deserialize_context(serializer, values):
            tokens = {key: values.pop(key, None)
                      for key in ('db_connection', 'mq_connection')}
            context = deserialize(serializer, values)
            for key, token in tokens.items():
                setattr(context, key, connections.get(token))
            return context

        # (``from nova.tests.fixtures import nova`` is nova itself.)
        cheating = importlib.import_module(
            'nova.tests.fixtures.nova').CheatingSerializer
        self.useFixture(fixtures.MockPatchObject(
            cheating, 'serialize_context', serialize_context))
        self.useFixture(fixtures.MockPatchObject(
            cheating, 'deserialize_context', deserialize_context))

    def _setup_compute_service(self):
        return None  # started by start_host, each on its own libvirtd

    def _stop_computes(self):
        for compute in self.computes.values():
            self._stop_compute(compute)

    @staticmethod
    def _stop_compute(compute):
        """Stop the service and close its driver's libvirt connection.

        Otherwise the events of the domains removed at cleanup, and the
        hosts' own end, reach a driver whose executors and database are
        gone. Once per service: ``start_host`` registers it to run before
        the service's fixture goes (a stop after that shuts nova's
        executors down for good), and ``_stop_computes`` runs later.
        """
        if getattr(compute, 'nclog_stopped', False):
            return
        compute.nclog_stopped = True
        compute.stop()
        host = compute.manager.driver._host
        # nova shuts the delayed-event executor down in cleanup_host, which
        # the service's graceful stop runs in the background: on a busy
        # machine after the test's check that no executor leaked.
        if host._delayed_executor is not None:
            host._delayed_executor.shutdown(wait=True)
        # Events already on their way (libvirt keeps a connection open
        # while a domain object holds it) go nowhere.
        handler = host._event_handler
        handler._lifecycle_event_handler = lambda *a, **kw: None
        handler._conn_event_handler = lambda *a, **kw: None
        conn, host._wrapped_conn = host._wrapped_conn, None
        if conn is not None:
            for call in (conn.unregisterCloseCallback, conn.close):
                try:
                    call()
                except libvirt.libvirtError as e:
                    LOG.debug('Closing the connection of %s: %s',
                              compute.host, e)

    def _remove_instances(self):
        for root in [SHARED_INSTANCES] + [
                os.path.join(h.root, 'instances')
                for h in self.cluster.hosts.values()]:
            for name in os.listdir(root) if os.path.isdir(root) else ():
                shutil.rmtree(os.path.join(root, name), True)

    def _attach_logs(self, exc_info):
        # self.hosts may be gone: nova's TestCase clears attributes early.
        for host in self.cluster.hosts.values():
            for name in ('libvirtd.log', 'virtlogd.log'):
                self.addDetail('%s-%s' % (host.name, name),
                               testtools.content.text_content(
                                   host.log_tail(name)))

    # -- computes ------------------------------------------------------

    def instances_path(self, name):
        if self.SHARED:
            return SHARED_INSTANCES
        return os.path.join(self.hosts[name].root, 'instances')

    def start_host(self, name):
        """Start ``name``'s nova-compute on its own libvirtd."""
        host = self.hosts[name]
        path = self.instances_path(name)
        os.makedirs(path, exist_ok=True)
        self.flags(instances_path=path,
                   compute_driver=self.DRIVERS[name])
        self.flags(connection_uri=host.uri, group='libvirt')
        node_uuid = host.host_uuid
        with mock.patch('nova.virt.node.get_local_node_uuid',
                        return_value=node_uuid):
            compute = self.start_service('compute', host=name)
            # Host caches the node uuid on first use: while it is mocked.
            self.assertEqual(node_uuid,
                             compute.manager.driver._host.get_node_uuid())
        self.assertEqual(self.DRIVERS[name] == OURS, isinstance(
            compute.manager.driver, nova_driver.LibvirtDriver))
        # Ours keeps the path it started with; nova's is told (for
        # PerHostInstancePaths).
        compute.manager.driver.instances_path = path
        if self.DRIVERS[name] == OURS:
            # Our RPC rides nova's RabbitMQ transport, and the bulk channel
            # found the broker behind it.
            cl = compute.manager.driver.consolelog
            self.assertIsNotNone(cl, 'console-log migration not set up')
            self.assertIs(nova_rpc.TRANSPORT, cl.rpcapi.transport)
            self.assertTrue(cl.rpcapi.bulk_url.startswith('amqp://'),
                            cl.rpcapi.bulk_url)
            self._time_steps(cl)
        self.computes[name] = compute
        self.addCleanup(self._stop_compute, compute)
        return compute

    # The driver's calls into our code at nova's steps (not the reads and
    # the periodic task): their time is what we add to an operation.
    STEPS = ('live_migration_started', 'pre_live_migration',
             'post_live_migration_at_source',
             'post_live_migration_at_destination', 'rollback_at_source',
             'rollback_at_destination', 'before_qemu_start',
             'before_instance_dir_removed', 'after_instance_dir_removed',
             'evacuated_here', 'evacuated_away', 'instance_deleted',
             'cold_migration_started', 'cold_migration_finishing',
             'cold_migration_finished', 'cold_migration_confirmed',
             'cold_migration_reverted', 'cold_migration_abandoned',
             'shelve_offloading', 'shelve_offload_failed', 'unshelving',
             'shelve_spawn_failed', 'unshelved', 'unshelve_pull')

    def _time_steps(self, consolelog):
        """Add the seconds of each of our steps to ``self.step_seconds``."""
        for name in self.STEPS:
            step = getattr(consolelog, name)

            def timed_step(*args, _step=step, **kwargs):
                started = time.monotonic()
                try:
                    return _step(*args, **kwargs)
                finally:
                    self.step_seconds.append(time.monotonic() - started)

            setattr(consolelog, name, timed_step)

    def restart_host(self, name):
        """Stop ``name``'s nova-compute and start a new one (new driver)."""
        self._stop_compute(self.computes.pop(name))
        return self.start_host(name)

    def ours(self, name):
        return isinstance(self.computes[name].manager.driver,
                          nova_driver.LibvirtDriver)

    def driver(self, name):
        return self.computes[name].manager.driver

    # -- the guest -----------------------------------------------------

    def _create_guest_image(self):
        with open(self.cluster.image, 'rb') as f:
            data = f.read()
        image = self.glance.create(None, {
            'name': 'counter', 'disk_format': 'raw',
            'container_format': 'bare', 'status': 'active',
            'size': len(data), 'min_disk': 0, 'min_ram': 0,
            'properties': {'hw_machine_type': 'pc'},
        }, data=io.BytesIO(data))
        return image['id']

    def boot(self, host='alpha', minimum=1):
        """A counting server on ``host``; waits for its ``minimum`` line."""
        # Not _create_server: it gives the build about 5 s, too short for
        # a real QEMU on a busy machine.
        server = self.api.post_server({'server': self._build_server(
            image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks='none', host=host)})
        server = self.wait_for_server(server, 'ACTIVE', host)
        self.domain(host, server['id'])  # really there
        self.wait_for_counter(server, minimum)
        return server

    def domain(self, host, uuid):
        return self.hosts[host].conn.lookupByUUIDString(uuid)

    def instance_dir(self, host, uuid):
        return os.path.join(self.instances_path(host), uuid)

    # -- waiting -------------------------------------------------------

    def wait_for(self, predicate, timeout=60, what='condition',
                 interval=0.2):
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                self.fail('timed out after %s s waiting for %s'
                          % (timeout, what))
            time.sleep(interval)

    def wait_for_server(self, server, status, host=None, timeout=120):
        def done():
            s = self.api.get_server(server['id'])
            if s['status'] == 'ERROR' and status != 'ERROR':
                self.fail('server went to ERROR: %s' % s.get('fault'))
            if (s['status'] == status and
                    s['OS-EXT-STS:task_state'] is None and
                    (host is None or s['OS-EXT-SRV-ATTR:host'] == host)):
                return s
            return None
        return self.wait_for(done, timeout, 'server %s %s on %s' % (
            server['id'], status, host))

    def migrations(self, server):
        return sorted(self.api.api_get(
            '/os-migrations?instance_uuid=%s' % server['id']
        ).body['migrations'], key=lambda m: m['id'])

    def wait_for_migration(self, server, count, timeout=180):
        """The ``count``-th migration record once it is final."""
        def done():
            records = self.migrations(server)
            if len(records) >= count and records[count - 1]['status'] in (
                    'completed', 'failed', 'error', 'cancelled'):
                return records[count - 1]
            return None
        return self.wait_for(done, timeout, 'migration %d of %s' % (
            count, server['id']))

    def console(self, server, length=None):
        body = {} if length is None else {'length': length}
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': body})['output']

    def wait_for_counter(self, server, minimum, timeout=60):
        """The API's console output once its last counter is ``minimum``."""
        def done():
            output = self.console(server)
            values = guest.counters(output.encode())
            return output if values and values[-1] >= minimum else None
        return self.wait_for(done, timeout, 'counter %d of %s' % (
            minimum, server['id']), interval=0.3)

    # -- boots and operations ------------------------------------------

    def fast_shutdown(self):
        # The boot sector ignores ACPI: nova falls back to a hard reboot
        # (soft reboot) and destroys it (stop) after these timeouts.
        self.flags(wait_soft_reboot_seconds=1, group='libvirt')
        self.flags(shutdown_timeout=0)

    def wait_for_boots(self, server, boots, lines=LINES_PER_BOOT):
        """Console output once it shows ``boots`` runs, the last long."""
        def done():
            output = self.console(server)
            runs, _ = check_boots(output)
            if len(runs) >= boots and runs[-1][1] - runs[-1][0] >= lines:
                return output
            return None
        return self.wait_for(done, 60, '%d boots of %s' % (
            boots, server['id']), interval=0.3)

    def reboot(self, server, kind):
        self.api.post_server_action(server['id'], {'reboot': {
            'type': kind}})
        return self.wait_for_server(server, 'ACTIVE', 'alpha')

    def action(self, server, body, status, host='alpha'):
        self.api.post_server_action(server['id'], body)
        return self.wait_for_server(server, status, host)

    def timed(self, name, operation, server):
        """Run ``operation(server)``; note its time under ``name``.

        With the time our steps took in it (none with nova's driver).
        """
        started = time.monotonic()
        steps = len(self.step_seconds)
        server = operation(server)
        self.op_times.append((name, time.monotonic() - started,
                              sum(self.step_seconds[steps:])))
        return server

    # -- migration -----------------------------------------------------

    def live_migrate(self, server, dest, block_migration=False,
                     expect='completed'):
        """``os-migrateLive`` to ``dest``; waits for the record; seconds."""
        count = len(self.migrations(server)) + 1
        # pre_live_migration (destination) copies this into the migrate
        # data; both computes share one CONF.
        self.flags(live_migration_inbound_addr=self.hosts[dest].address,
                   group='libvirt')
        started = time.monotonic()
        steps = len(self.step_seconds)
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': dest, 'block_migration': block_migration}})
        record = self.wait_for_migration(server, count)
        seconds = time.monotonic() - started
        expect = (expect,) if isinstance(expect, str) else expect
        self.assertIn(record['status'], expect, record)
        if expect == 'completed':
            server = self.wait_for_server(server, 'ACTIVE', dest)
        self.timings.append(seconds)
        self.migration_steps.append(sum(self.step_seconds[steps:]))
        LOG.info('Live migration %s -> %s of %s: %s in %.2f s',
                 record['source_compute'], dest, server['id'],
                 record['status'], seconds)
        return server, seconds

    def assertWhole(self, output, what=''):
        values, problems = check_counters(output)
        if problems:
            self.fail('%s: console history not whole: %s; counters %s'
                      % (what, '; '.join(problems[:10]), describe(values)))
        return values

    def consolelog_trouble(self):
        """Warnings and errors our code logged in this test."""
        return [line for line in self.stdlog.logger.output.splitlines()
                if ('WARNING [nova_consolelog' in line or
                    'ERROR [nova_consolelog' in line)]

    def assertNoConsoleLogTrouble(self):
        trouble = self.consolelog_trouble()
        self.assertEqual([], trouble, 'nova-consolelog warned or failed')

    def report(self, scenario, values):
        """One line for the closing note: counters seen, migration times."""
        pulls = [line.split(' ', 2)[-1][:300] for line in
                 self.stdlog.logger.output.splitlines()
                 if '[nova_consolelog' in line and 'INFO' in line]
        line = '%s: counters %s; migrations %s%s%s' % (
            scenario, describe(values),
            ', '.join('%.2f s' % t for t in self.timings) or 'none',
            ' (our steps in them %s)' % ', '.join(
                '%.1f ms' % (1000 * t) for t in self.migration_steps)
            if self.migration_steps else '',
            ''.join('\n    ' + p for p in pulls))
        LOG.info(line)
        sys.stderr.write('nova-e2e report: %s\n' % line)
        self.addDetail('report', testtools.content.text_content(line))


def times(op_times):
    """``name 1.23 s (ours 4.5 ms), ...`` for a report line."""
    return ', '.join('%s %.2f s (ours %.1f ms)' % (name, total, 1000 * ours)
                     for name, total, ours in op_times)
