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

"""Console-log migration on real libvirtd + virtlogd + QEMU and RabbitMQ.

The guest counts on its serial console while it live-migrates A→B→A→B.
Each host has its console-log RPC endpoint on the local RabbitMQ and its
``ConsoleLogMigration`` steps, called in nova's order:

1. source ``live_migration_started``;
2. destination ``pre_live_migration`` (nova has created the instance
   directory; on a shared path the chain is moved aside here, before the
   incoming QEMU makes virtlogd truncate it);
3. the libvirt live migration (``migrateToURI3``, no ``UNDEFINE_SOURCE``);
4. source ``post_live_migration_at_source`` (waits for the source domain
   to shut off, stashes the chain);
5. nova's ``driver.cleanup()`` stand-in: the source instance directory is
   deleted when the path is not shared;
6. destination ``post_live_migration_at_destination`` (pulls, verifies,
   installs as history, releases the source's stash).

Then every counter from the first to the last must appear exactly once and
in order in the final host's merged console log, and in the console output
nova would show. Finally the reaper of
each host runs against the real daemons: the old source domains, shut off
and handed over, are undefined; the running one is kept.
"""

import os
import shutil
import time

import libvirt
from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import virt

from tests.e2e import base
from tests.e2e import guest
from tests.e2e import hosts
from tests.e2e import migrations

LOG = logging.getLogger(__name__)

MERGED_READ_BYTES = 64 * 1024 * 1024


class ConsoleLogMigrationTest(migrations.MigrationTestCase):

    def hop(self, src, dst, uuid, shared, seen):
        """One live migration of ``uuid`` in nova's order of steps."""
        src_dir = src.libvirt_host.instance_dir(uuid, shared)
        dst_dir = dst.libvirt_host.instance_dir(uuid, shared)
        values = self.wait_for_counter(src_dir, seen + base.LINES_PER_HOP)
        LOG.info('%s on %s: live log %d..%d (%d lines) before leaving',
                 uuid, src.name, values[0], values[-1], len(values))
        self.assertTrue(os.path.exists(os.path.join(src_dir,
                                                    'console.log.0')),
                        'virtlogd has not rotated: the test would not cover '
                        'rotated files')

        started = time.monotonic()
        src.steps.live_migration_started(uuid, dst.name, shared)
        os.makedirs(dst_dir, exist_ok=True)  # nova's pre_live_migration
        dst.steps.pre_live_migration(uuid, src.name, shared)
        pre = time.monotonic() - started
        self.migrate(src.libvirt_host, dst.libvirt_host, uuid)
        started = time.monotonic()
        src.steps.post_live_migration_at_source(
            uuid, dst.name, shared,
            domain=self.domain(src.libvirt_host, uuid))
        at_source = time.monotonic() - started
        self.assertEqual(
            libvirt.VIR_DOMAIN_SHUTOFF,
            self.domain(src.libvirt_host, uuid).state()[0])
        if not shared:
            # nova's driver.cleanup(): rename to <dir>_del, delete.
            os.rename(src_dir, src_dir + '_del')
            shutil.rmtree(src_dir + '_del')
        started = time.monotonic()
        dst.steps.post_live_migration_at_destination(uuid, src.name, shared)
        at_destination = time.monotonic() - started
        LOG.info('%s %s->%s (shared=%s): steps took %.3f s before, %.3f s '
                 'at the source (shutoff wait + stash), %.3f s at the '
                 'destination (pull + install + release)', uuid, src.name,
                 dst.name, shared, pre, at_source, at_destination)
        return values[-1]

    def check_final_log(self, host, uuid):
        """Every counter exactly once, in order, in the merged read."""
        directory = os.path.join(host.instances_path, uuid)
        merged = cl_chain.ConsoleLogChain(directory, conf=host.conf).read_tail(
            MERGED_READ_BYTES)
        values = guest.counters(merged)
        LOG.info('%s final on %s: merged log %d..%d, %d lines checked',
                 uuid, host.name, values[0], values[-1], len(values))
        files = guest.describe_files(directory)
        self.assertEqual(1, values[0],
                         'the first lines are missing; files:\n' + files)
        self.assertEqual([], guest.check_sequence(values),
                         'files:\n' + files)
        return values

    def reap(self, computes, uuid, final):
        """Run each host's reaper with the database saying ``final``."""
        results = {}
        for compute in computes:
            reaped = virt.Reaper(
                compute.libvirt_host.conn, compute.name,
                {uuid: final.name}.get, compute.stash_age,
                stash_expiry=3600).run()
            results[compute.libvirt_host.name] = [
                r for r in reaped if r.uuid == uuid]
        return results

    def _round_trip(self, shared):
        a, b = self.compute_hosts(shared)
        uuid = self.start_guest(self.a, shared)
        seen = 0
        for src, dst in ((a, b), (b, a), (a, b)):
            seen = self.hop(src, dst, uuid, shared, seen)
        # Let the final host write its own part, then check it all.
        self.wait_for_counter(b.libvirt_host.instance_dir(uuid, shared),
                              seen + base.LINES_PER_HOP)
        values = self.check_final_log(b, uuid)
        self.assertGreater(values[-1], seen)
        # What os-getConsoleOutput would show: the whole history still fits
        # in max_console_bytes (100 KiB), so it too starts at the first line.
        shown = guest.counters(b.steps.get_console_output(uuid))
        self.assertEqual(1, shown[0])
        self.assertEqual([], guest.check_sequence(shown))
        self.assertGreaterEqual(shown[-1], values[-1])
        LOG.info('%s: migrations took %s s', uuid,
                 ', '.join('%.2f' % t for t in self.timings))

        results = self.reap((a, b), uuid, final=b)
        self.assertEqual([virt.UNDEFINED], [r.action for r in results['a']],
                         results)
        self.assertEqual([virt.KEPT], [r.action for r in results['b']],
                         results)
        self.assertRaises(libvirt.libvirtError,
                          self.domain, self.a, uuid)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain(self.b, uuid).state()[0])

    def _shared_guest_nearly_full(self):
        """A guest on a shared path whose console.log is about to rotate.

        Returns the hosts, the uuid, the shared directory and the path of
        its console.log.
        """
        a, b = self.compute_hosts(shared=True)
        uuid = self.start_guest(self.a, shared=True)
        directory = self.a.instance_dir(uuid, shared=True)
        self.wait_for_counter(directory, base.LINES_PER_HOP)
        log = os.path.join(directory, 'console.log')
        deadline = time.monotonic() + 30
        while not (hosts.VIRTLOGD_MAX_SIZE - 400 <= os.path.getsize(log)
                   < hosts.VIRTLOGD_MAX_SIZE - 200):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.005)
        return a, b, uuid, directory, log

    def test_shared_source_virtlogd_rotates_during_migration(self):
        """The source's virtlogd rolls over while the guest migrates.

        On a shared path the chain is moved aside in pre_live_migration,
        but the source's virtlogd keeps writing until the source QEMU stops
        and rotates *by path*, in the shared instance directory the
        destination's virtlogd now writes to. Start the migration when the
        source's console.log is nearly full so that this happens.

        Found by this harness (2026-11-25): the source's last lines then
        sit in a backup numbered as if newer than the destination's first
        full file (for example ``console.log.1`` = 585..704 and
        ``console.log.2`` = 705..996), and the merged read, which orders
        backups by number, returns them out of order. Their modification
        times are in the true order.
        """
        a, b, uuid, directory, log = self._shared_guest_nearly_full()
        self.hop(a, b, uuid, True, 0)
        self.wait_for_counter(directory, 1)
        time.sleep(1)
        self.check_final_log(b, uuid)

    def test_shared_source_rotates_before_incoming_qemu_starts(self):
        """The source's virtlogd rolls over before the destination's starts.

        pre_live_migration moves the chain aside; if the source's virtlogd
        then rotates, it creates a new ``console.log`` in the shared
        directory and writes the source's last lines there, and the
        incoming QEMU's virtlogd (``append="off"``) unlinks that file when
        it starts: those lines live only in an unlinked file until the
        source QEMU stops. Found by test_shared_instance_path failing once
        in CI (2026-11-25, "985..1056 missing"); here the migration waits
        until the source has rotated, so that it always happens.
        """
        a, b, uuid, directory, log = self._shared_guest_nearly_full()
        a.steps.live_migration_started(uuid, b.name, True)
        b.steps.pre_live_migration(uuid, a.name, True)
        self.assertFalse(os.path.exists(log))
        deadline = time.monotonic() + 30
        while not os.path.exists(log):
            self.assertLess(time.monotonic(), deadline,
                            'the source virtlogd did not rotate')
            time.sleep(0.005)
        self.migrate(self.a, self.b, uuid)
        a.steps.post_live_migration_at_source(
            uuid, b.name, True, domain=self.domain(self.a, uuid))
        b.steps.post_live_migration_at_destination(uuid, a.name, True)
        self.wait_for_counter(directory, 1)
        time.sleep(1)
        self.check_final_log(b, uuid)

    def _failed_migration(self, shared):
        """A migration that fails after the destination QEMU started.

        The source is told to send the migration stream to its own
        address: the destination's incoming QEMU has started (virtlogd has
        opened, and truncated, the console log for it) when the source's
        connection is refused. nova then rolls back, source first.
        """
        a, b = self.compute_hosts(shared)
        uuid = self.start_guest(self.a, shared)
        src_dir = self.a.instance_dir(uuid, shared)
        dst_dir = self.b.instance_dir(uuid, shared)
        before = self.wait_for_counter(src_dir, base.LINES_PER_HOP)

        a.steps.live_migration_started(uuid, b.name, shared)
        os.makedirs(dst_dir, exist_ok=True)
        b.steps.pre_live_migration(uuid, a.name, shared)
        flags = virt.migration_flags(base.NOVA_LIVE_MIGRATION_FLAGS, True)
        params = {libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://%s' % self.a.address}
        error = self.assertRaises(libvirt.libvirtError,
                                  self.domain(self.a, uuid).migrateToURI3,
                                  self.b.migrate_uri, params, flags)
        LOG.info('%s: the migration failed as intended: %s', uuid, error)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain(self.a, uuid).state()[0])
        a.steps.rollback_at_source(uuid)
        b.steps.rollback_at_destination(uuid, a.name, shared)
        if not shared:
            shutil.rmtree(dst_dir)  # nova's destination cleanup

        self.wait_for_counter(src_dir, before[-1] + base.LINES_PER_HOP)
        values = self.check_final_log(a, uuid)
        self.assertGreater(values[-1], before[-1] + base.LINES_PER_HOP - 1)

    def test_failed_migration_non_shared(self):
        self._failed_migration(shared=False)

    def test_failed_migration_shared(self):
        self._failed_migration(shared=True)

    def test_non_shared_instance_path(self):
        self._round_trip(shared=False)

    def test_shared_instance_path(self):
        self._round_trip(shared=True)
