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

"""Live migrations through nova's API, nova's driver against ours."""

import os
import time

import libvirt

from tests.nova_e2e import base
from tests.e2e import guest  # noqa: H306  (after base: nova first)

# Lines the guest logs on a host before it moves on (~18 lines/s).
LINES_PER_STAY = 40


class Scenarios:
    """Scenarios 2, 3 and 4, for a shared and a per-host instances path."""

    def files_of(self, host, uuid):
        """Paths under ``host``'s instances path that name ``uuid``."""
        found = []
        for dirpath, dirnames, filenames in os.walk(
                self.instances_path(host)):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames
                      if uuid in os.path.join(dirpath, n)]
        return found

    def a_b_a_b(self, server):
        """Live-migrate to beta, alpha, beta; yield after each hop.

        Yields ``(server, dest, stay, output)`` once the guest's counter
        reached ``stay`` (another stay's lines) on ``dest``.
        """
        stay = LINES_PER_STAY
        for dest in ('beta', 'alpha', 'beta'):
            server, _ = self.live_migrate(
                server, dest, block_migration=not self.SHARED)
            stay += LINES_PER_STAY
            yield server, dest, stay, self.wait_for_counter(server, stay)

    def test_control_nova_driver(self):
        # Scenario 1, the control: nova's own driver on both computes
        # (test_control_* start nova's driver; see setUp). The check the
        # other scenarios pass fails here: the history before each
        # migration is gone.
        self.assertFalse(self.ours('alpha') or self.ours('beta'))
        server = self.boot('alpha', LINES_PER_STAY)
        self.assertWhole(self.console(server), 'before the migration')
        for server, dest, stay, output in self.a_b_a_b(server):
            values, problems = base.check_counters(output)
            self.assertTrue(problems, 'nova lost nothing: %s'
                            % base.describe(values))
            self.assertGreater(values[0], stay - LINES_PER_STAY)
        self.report('1 nova driver (control), %s, A-B-A-B, lost 1..%d'
                    % (self.PATH, values[0] - 1), values)

    def test_a_b_a_b(self):
        # Scenario 2: there and back twice, the whole history each time.
        self.assertTrue(self.ours('alpha') and self.ours('beta'))
        server = self.boot('alpha', LINES_PER_STAY)
        for server, dest, _stay, output in self.a_b_a_b(server):
            values = self.assertWhole(output, 'after moving to %s' % dest)
            # The log is really written on the destination now.
            self.assertTrue(os.path.exists(os.path.join(
                self.instance_dir(dest, server['id']), 'console.log')))
        # With ``length`` nova keeps the last pieces of split('\n') of our
        # merged read: the newest lines, in order, all in the whole read.
        tail = guest.counters(self.console(server, length=10).encode())
        values = self.assertWhole(self.console(server), 'the whole read')
        self.assertTrue(8 <= len(tail) <= 10, tail)
        self.assertEqual([], guest.check_sequence(tail))
        self.assertEqual(tail, values[values.index(tail[0]):][:len(tail)])
        self.assertNoConsoleLogTrouble()
        self.report('2 ours, %s, A-B-A-B' % self.PATH, values)

    def test_refused_by_the_destination(self):
        # Scenario 3: the destination's libvirtd refuses the incoming QEMU,
        # after nova's (and our) pre_live_migration ran there.
        server = self.boot('alpha', LINES_PER_STAY)
        uuid = server['id']
        self.cluster.refuse_incoming('beta')
        server, _ = self.live_migrate(
            server, 'beta', block_migration=not self.SHARED,
            expect=('error', 'failed'))
        # nova 34.0.0 re-raises the failed migrateToURI3 after its rollback
        # (LibvirtDriver._live_migration: future.result()), so the manager
        # puts the instance in ERROR -- its own driver's too; the guest
        # runs on on the source.
        server = self.wait_for_server(server, 'ERROR', 'alpha')
        self.assertTrue(self.domain('alpha', uuid).isActive())
        self.assertRaises(libvirt.libvirtError, self.domain, 'beta', uuid)
        if not self.SHARED:
            # nova's rollback at the destination is a cast: wait for it.
            self.wait_for(lambda: not self.files_of('beta', uuid), 30,
                          'the instance files on beta to go')
        output = self.wait_for_counter(server, 2 * LINES_PER_STAY)
        values = self.assertWhole(output, 'after the refused migration')
        # Nothing left behind that gets in the way of the next one.
        self.cluster.refuse_incoming('beta', False)
        self.api.post_server_action(uuid, {'os-resetState': {
            'state': 'active'}})
        server = self.wait_for_server(server, 'ACTIVE', 'alpha')
        server, _ = self.live_migrate(
            server, 'beta', block_migration=not self.SHARED)
        output = self.wait_for_counter(server, values[-1] + LINES_PER_STAY)
        values = self.assertWhole(output, 'after the next migration')
        self.assertNoConsoleLogTrouble()
        self.report('3 ours, %s, refused then migrated' % self.PATH, values)

    def test_reads_during_migration(self):
        # Scenario 4: the API's console output every 100 ms while the guest
        # moves: every read whole, none shorter than the one before.
        server = self.boot('alpha', LINES_PER_STAY)
        self.flags(live_migration_inbound_addr=self.hosts['beta'].address,
                   group='libvirt')
        started = time.monotonic()
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': 'beta', 'block_migration': not self.SHARED}})
        previous, reads, record, reads_after = [], 0, None, 0
        while record is None or reads_after < 10:
            output = self.console(server)
            reads += 1
            values = self.assertWhole(output, 'read %d' % reads)
            self.assertGreaterEqual(len(values), len(previous),
                                    'read %d shorter than the one before'
                                    % reads)
            previous = values
            if record is None:
                records = self.migrations(server)
                if records and records[-1]['status'] in (
                        'completed', 'error', 'failed'):
                    record = records[-1]
                    self.timings.append(time.monotonic() - started)
                    reads_after = 0
            else:
                reads_after += 1
            time.sleep(0.1)
        self.assertEqual('completed', record['status'])
        server = self.wait_for_server(server, 'ACTIVE', 'beta')
        output = self.wait_for_counter(server, previous[-1] + 20)
        values = self.assertWhole(output, 'after the migration')
        self.assertNoConsoleLogTrouble()
        self.report('4 ours, %s, %d reads during the migration'
                    % (self.PATH, reads), values)


class SharedPathTest(Scenarios, base.NovaE2ETestCase):
    """Ours on both computes, one shared instance path."""

    PATH = 'shared path'


class BlockMigrationTest(Scenarios, base.NovaE2ETestCase):
    """Ours on both computes, an instances path each: block migration."""

    SHARED = False
    PATH = 'block migration'
