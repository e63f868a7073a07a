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

"""Two nova computes running our driver, each with its own instance dir.

Built on nova's functional harness (``ServersTestBase``: the real API,
conductor, scheduler and placement in-process, fakelibvirt, nova's fake RPC
driver). What this module adds, and why:

* ``compute_driver = consolelog.LibvirtDriver`` — the way an operator loads
  the driver — set after nova's ``_setup_compute_service``;
* per-host instance directories. Both computes share one process and one
  CONF, so nova would see one ``instances_path`` and therefore shared
  storage. Each driver keeps the path it was created with;
  ``PerHostInstancePaths`` makes nova's path helpers, its three
  shared-storage test-file methods and the evacuation's shared-storage
  check (``check_instance_shared_storage_remote``) answer with the path of
  the driver they run for. nova then sees non-shared storage and
  block-migrates, and for that ``_get_instance_disk_info_from_config``
  must find no disk files
  (fakelibvirt's disks do not exist);
* a migration stub that behaves like libvirt for the source domain: with
  ``VIR_MIGRATE_UNDEFINE_SOURCE`` it is undefined, without it it stays
  defined and shut off;
* ``nova.privsep.path.last_bytes`` read in-process (nova's fixtures refuse
  to start privsep) for nova's own console read, which our driver falls
  back to.

Console output is written by the tests straight into
``<host instances_path>/<uuid>/console.log``, where virtlogd would write it.
"""

import os
import sys
import time
from urllib import parse

import nova.tests.functional  # noqa: F401  (nova's monkey patching first)

import fixtures
from lxml import etree
from nova import conf as nova_conf
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional import integrated_helpers
from nova.tests.functional.libvirt import base as libvirt_base
from nova.virt.libvirt import driver as libvirt_driver

from nova_consolelog import nova_driver

CONF = nova_conf.CONF

# nova's API fixture looks for api-paste.ini under site-packages; the
# wheel installs it under <prefix>/etc/nova.
API_PASTE = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')
os.environ.setdefault('OS_WSGI__API_PASTE_CONFIG', API_PASTE)

DRIVER = 'consolelog.LibvirtDriver'

VIR_MIGRATE_UNDEFINE_SOURCE = 16
VIR_MIGRATE_PERSIST_DEST = 8
VIR_DOMAIN_SHUTOFF = 5
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2


def _driver_in_stack():
    """The nearest libvirt driver with a path of its own up the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        candidate = frame.f_locals.get('self')
        if (isinstance(candidate, libvirt_driver.LibvirtDriver) and
                hasattr(candidate, 'instances_path')):
            return candidate
        frame = frame.f_back
    return None


def _instances_path():
    driver = _driver_in_stack()
    return driver.instances_path if driver else CONF.instances_path


class PerHostInstancePaths(fixtures.Fixture):
    """nova's instance-path helpers answer per driver (per host)."""

    def _setUp(self):
        def get_instance_path(instance, relative=False):
            if relative:
                return instance.uuid
            return os.path.join(_instances_path(), instance.uuid)

        def get_instance_path_at_destination(instance, migrate_data=None):
            relative = (migrate_data is not None and
                        migrate_data.obj_attr_is_set(
                            'instance_relative_path') and
                        migrate_data.instance_relative_path)
            if relative:
                return os.path.join(_instances_path(), relative)
            return get_instance_path(instance)

        def create_test_file(driver, instance):
            name = 'shared-storage-test-%s' % instance.uuid
            open(os.path.join(driver.instances_path, name), 'w').close()
            return name

        def check_test_file(driver, filename, instance):
            return os.path.exists(os.path.join(driver.instances_path,
                                               filename))

        def cleanup_test_file(driver, filename):
            os.remove(os.path.join(driver.instances_path, filename))

        def check_shared_storage_remote(driver, context, data):
            # nova's check (the peer's temporary file exists here) sees
            # every file in one process: only this host's path counts.
            filename = data['filename']
            return (filename.startswith(driver.instances_path + os.sep) and
                    os.path.exists(filename))

        utils = 'nova.virt.libvirt.utils.'
        self.useFixture(fixtures.MonkeyPatch(
            utils + 'get_instance_path', get_instance_path))
        self.useFixture(fixtures.MonkeyPatch(
            utils + 'get_instance_path_at_destination',
            get_instance_path_at_destination))
        driver = 'nova.virt.libvirt.driver.LibvirtDriver.'
        for name, fn in (
                ('_create_shared_storage_test_file', create_test_file),
                ('_check_shared_storage_test_file', check_test_file),
                ('_cleanup_shared_storage_test_file', cleanup_test_file),
                ('check_instance_shared_storage_remote',
                 check_shared_storage_remote)):
            self.useFixture(fixtures.MonkeyPatch(driver + name, fn))
        # Block migration copies the disks found in the guest config;
        # fakelibvirt's disk files do not exist.
        self.useFixture(fixtures.MockPatch(
            driver + '_get_instance_disk_info_from_config',
            return_value=[]))


class LibvirtCompletions(fixtures.Fixture):
    """Two libvirt behaviours fakelibvirt lacks and our code relies on.

    ``virDomain.state()`` (fakelibvirt only has ``info()``) and
    ``listAllDomains(0)`` returning every domain (fakelibvirt returns none
    without an ACTIVE/INACTIVE flag; libvirt returns all).
    """

    def _setUp(self):
        fake = 'nova.tests.fixtures.libvirt.'
        list_all = fakelibvirt.Connection.listAllDomains

        def state(domain, flags=0):
            return [domain._state, 0]

        def list_all_domains(conn, flags=0):
            return list_all(conn, flags or (
                VIR_CONNECT_LIST_DOMAINS_ACTIVE |
                VIR_CONNECT_LIST_DOMAINS_INACTIVE))

        self.useFixture(fixtures.MonkeyPatch(fake + 'Domain.state', state))
        self.useFixture(fixtures.MonkeyPatch(
            fake + 'Connection.listAllDomains', list_all_domains))


def last_bytes(path, num):
    """nova.privsep.path.last_bytes, in-process (no privsep in tests)."""
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - num)
        f.seek(start)
        return f.read(), start


class ConsoleLogNovaTestBase(libvirt_base.LibvirtMigrationMixin,
                             libvirt_base.ServersTestBase,
                             integrated_helpers.InstanceHelperMixin):
    """Computes running ``consolelog.LibvirtDriver``; see the module doc."""

    ADMIN_API = True
    microversion = '2.74'

    def setUp(self):
        if not os.path.exists(os.environ['OS_WSGI__API_PASTE_CONFIG']):
            self.fail('nova api-paste.ini not found at %s: run these tests '
                      'with tox -e nova-functional, or set '
                      'OS_WSGI__API_PASTE_CONFIG' %
                      os.environ['OS_WSGI__API_PASTE_CONFIG'])
        super().setUp()
        self.root = CONF.instances_path
        self.useFixture(PerHostInstancePaths())
        self.useFixture(LibvirtCompletions())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.privsep.path.last_bytes', last_bytes))
        # A peer that does not answer must not hold a test for a minute.
        self.flags(rpc_timeout=3, group='consolelog')
        self.migration_flags = []

    def _setup_compute_service(self):
        super()._setup_compute_service()
        self.flags(compute_driver=DRIVER)

    def start_host(self, hostname, compute_driver=DRIVER, path=None):
        """Start a compute with its own instances path; its service.

        ``compute_driver='libvirt.LibvirtDriver'`` starts nova's own driver
        (a host without nova-consolelog); ``path`` another host's path
        makes the instance path shared.
        """
        path = path or os.path.join(self.root, hostname)
        os.makedirs(path, exist_ok=True)
        self.flags(instances_path=path, compute_driver=compute_driver)
        self.start_compute(hostname=hostname)
        compute = self.computes[hostname]
        if compute_driver == DRIVER:
            self.assertIsInstance(compute.driver, nova_driver.LibvirtDriver)
        else:
            self.assertNotIsInstance(compute.driver,
                                     nova_driver.LibvirtDriver)
            compute.driver.instances_path = path
        self.assertEqual(path, compute.driver.instances_path)
        return compute

    def host_of_connection(self, conn):
        for name, compute in self.computes.items():
            if compute.driver._host.get_connection() is conn:
                return name
        return None

    def _migrate_stub(self, domain, destination, params, flags):
        """Move the guest like libvirt would, flags honoured."""
        self.migration_flags.append(flags)
        dest = parse.urlparse(destination).hostname
        dest_conn = self.computes[dest].driver._host.get_connection()
        xml = params['destination_xml']
        uuid = etree.fromstring(xml).find('./uuid').text
        if flags & VIR_MIGRATE_PERSIST_DEST:
            dest_conn.defineXML(xml).create()
        else:
            dest_conn.createXML(xml, 0)
        self.virtlogd_truncates(dest, uuid)
        self.before_source_stops(uuid, dest)
        domain.destroy()
        if flags & VIR_MIGRATE_UNDEFINE_SOURCE:
            domain.undefine()
        self.after_source_stops(uuid, dest)
        domain.complete_job()
        self.migrate_stub_ran = True

    def virtlogd_truncates(self, hostname, instance_uuid):
        """What virtlogd does when a QEMU starts with ``append="off"``.

        It unlinks ``console.log`` and every ``console.log.N`` of the
        instance directory; on a shared path that is the source's chain.
        """
        directory = self.instance_dir(hostname, instance_uuid)
        if not os.path.isdir(directory):
            return
        for name in os.listdir(directory):
            if name == 'console.log' or (
                    name.startswith('console.log.') and
                    name[len('console.log.'):].isdigit()):
                os.unlink(os.path.join(directory, name))

    def before_source_stops(self, instance_uuid, dest_host):
        """Hook: the guest still runs on the source (before switch-over)."""

    def after_source_stops(self, instance_uuid, dest_host):
        """Hook: the source domain has stopped, nova has not noticed."""

    # -- helpers ---------------------------------------------------------

    def instance_dir(self, hostname, instance_uuid):
        return os.path.join(self.computes[hostname].driver.instances_path,
                            instance_uuid)

    def write_console(self, hostname, instance_uuid, lines, name=None):
        """Append lines where virtlogd writes the guest's console."""
        directory = self.instance_dir(hostname, instance_uuid)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name or 'console.log')
        with open(path, 'ab') as f:
            f.write(b''.join(line + b'\n' for line in lines))

    def console_output(self, server, length=None):
        body = {} if length is None else {'length': length}
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': body})['output']

    def domain(self, hostname, instance_uuid):
        """The host's libvirt domain of the instance, or None."""
        conn = self.computes[hostname].driver._host.get_connection()
        for dom in conn._vms.values():
            if dom.UUIDString() == instance_uuid:
                return dom
        return None

    def wait_for(self, predicate, timeout=20, what='condition'):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        self.fail('timed out after %ss waiting for %s' % (timeout, what))
