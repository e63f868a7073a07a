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

"""Base class of the e2e tests: two hosts per class, guests per test.

The daemons start once per test class (a cold libvirtd start probes QEMU's
capabilities for seconds); each test defines its own guest and removes it.
"""

import os
import shutil
import time
import uuid as uuidlib

import libvirt
from oslo_log import log as logging
from oslotest import base
import testtools

from nova_consolelog import virt

from tests.e2e import guest
from tests.e2e import hosts

LOG = logging.getLogger(__name__)

# What nova's LibvirtDriver._prepare_migration_flags() gives a live
# migration without block migration; migration_flags() drops the undefine.
NOVA_LIVE_MIGRATION_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
    libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)

# Lines the guest must have logged on a host before it migrates away
# (~290 lines/s).
LINES_PER_HOP = 300


class E2ETestCase(base.BaseTestCase):
    """Two real libvirt hosts, ``self.a`` and ``self.b``."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        # Before any connection is opened: the remote driver only watches
        # its socket for events if an event loop exists at open time.
        virt.EventLoop.start()
        fixture = hosts.TwoHosts()
        fixture.setUp()  # cleans up after itself when it fails
        cls.addClassCleanup(fixture.cleanUp)
        cls.cluster = fixture

    def setUp(self):
        super().setUp()
        self.a, self.b = self.cluster.a, self.cluster.b
        LOG.info('Hosts: libvirtd ready in %s s; %s guests',
                 ', '.join('%.1f' % h.startup_seconds
                           for h in self.cluster.hosts),
                 self.cluster.virt_type)
        self.timings = []
        self.addOnException(self._attach_daemon_logs)

    def _attach_daemon_logs(self, exc_info):
        for host in self.cluster.hosts:
            for name in ('libvirtd.log', 'virtlogd.log'):
                self.addDetail('%s-%s' % (host.name, name),
                               testtools.content.text_content(
                                   host.log_tail(name)))

    # -- guests ------------------------------------------------------------

    def start_guest(self, host, shared):
        """Define and start a counting guest on ``host``; its uuid."""
        uuid = str(uuidlib.uuid4())
        os.makedirs(host.instance_dir(uuid, shared))
        common = hosts.SHARED_INSTANCES if shared else \
            hosts.PRIVATE_INSTANCES
        xml = guest.domain_xml(uuid, os.path.join(common, uuid),
                               self.cluster.image, self.cluster.virt_type)
        self.addCleanup(self._remove_guest, uuid)
        host.conn.defineXML(xml).create()
        return uuid

    def _remove_guest(self, uuid):
        for host in self.cluster.hosts:
            try:
                dom = host.conn.lookupByUUIDString(uuid)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
            for shared in (False, True):
                shutil.rmtree(host.instance_dir(uuid, shared), True)

    def domain(self, host, uuid):
        return host.conn.lookupByUUIDString(uuid)

    # -- migration ---------------------------------------------------------

    def migrate(self, src, dst, uuid):
        """Live-migrate ``uuid`` from ``src`` to ``dst``; the seconds taken.

        With nova's flags minus ``VIR_MIGRATE_UNDEFINE_SOURCE``.
        """
        flags = virt.migration_flags(NOVA_LIVE_MIGRATION_FLAGS, True)
        self.assertTrue(virt.check_flags(flags))
        params = {libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://%s' % dst.address}
        started = time.monotonic()
        self.domain(src, uuid).migrateToURI3(dst.migrate_uri, params, flags)
        seconds = time.monotonic() - started
        self.timings.append(seconds)
        LOG.info('Migrated %s from %s to %s in %.2f s', uuid, src.name,
                 dst.name, seconds)
        state, reason = self.domain(dst, uuid).state()
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, state)
        return seconds

    # -- console logs ------------------------------------------------------

    def wait_for_counter(self, directory, minimum, timeout=60):
        """Counters of virtlogd's files once the last reaches ``minimum``."""
        deadline = time.monotonic() + timeout
        while True:
            values = guest.counters(guest.read_virtlogd_chain(directory))
            if values and values[-1] >= minimum:
                return values
            if time.monotonic() > deadline:
                self.fail('console log in %s has not reached %d within %s '
                          's (last: %s)' % (directory, minimum, timeout,
                                            values[-1:] or 'none'))
            time.sleep(0.1)
