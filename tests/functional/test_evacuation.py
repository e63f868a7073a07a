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

"""An evacuation's history collected over RabbitMQ, and killed midway.

The old host ``src`` is a ``nova-consolelog serve`` process, down at
first (no process: its RPC calls go unanswered); the new host ``dst`` is
this test process (or, for the crashes, a process SIGKILLed at a step of
the collection). ``dst`` owes the older output since the evacuation,
reboots meanwhile (its output goes behind the reserved slot), then the
old host comes back and stashes, and ``dst``'s periodic task collects.
"""

import os
import uuid

from nova_consolelog.handover import record as cl_record
from nova_consolelog import history_import
from nova_consolelog import migration

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import crashes
from tests.functional import pulls

KiB = 1024
MiB = 1024 * KiB
FILES = crashes.CrashTestCase.FILES
EXPECTED = test_fixtures.chain_bytes(FILES)
SLOT = 'console.history.000001'
REBOOTED = 'console.history.000002'


class EvacuationTestCase(pulls.PullTestCase):

    def setUp(self):
        super().setUp()
        self.instance = str(uuid.uuid4())
        # The old host: its files on disk, its process not running.
        self.src = base.HostProcess(self.root, 'src', self.topic,
                                    overrides=dict(chunk_size=256 * KiB,
                                                   bulk_window=MiB))
        self.addCleanup(self.src.stop)
        test_fixtures.write_chain(self.src.conf, self.instance, FILES)
        self.conf, self.rpcapi = self.client(
            'dst', chunk_size=256 * KiB, bulk_window=MiB, rpc_timeout=3,
            pull_retries=1, pull_timeout=60,
            max_console_bytes=8 * MiB)
        self.mig = migration.ConsoleLogMigration(self.conf, 'dst',
                                                 self.rpcapi)
        self.chain = self.mig.chain(self.instance)
        self.after = pulls.random_bytes(300 * KiB, 31)
        self.newest = pulls.text_bytes(64 * KiB, 32)

    def evacuated_and_rebooted(self):
        """dst: the rebuild, the spawn, output, a reboot, more output."""
        self.assertTrue(self.mig.evacuated_here(self.instance, 'src'))
        self.mig.before_qemu_start(self.instance)
        self.write_log(self.after)
        self.assertEqual([REBOOTED],
                         self.mig.before_qemu_start(self.instance))
        self.write_log(self.newest)

    def write_log(self, data):
        with open(self.chain.path('console.log'), 'wb') as f:
            f.write(data)

    def old_host_back(self):
        """src serves again; its init_host stashes before nova's destroy."""
        self.src.start()
        steps = migration.ConsoleLogMigration(self.src.conf, 'src', None)
        self.stash_id = steps.evacuated_away(self.instance, 'dst')
        self.assertIsNotNone(self.stash_id)

    def probe_now(self):
        """The backoff is over (for the record and its host)."""
        self.mig.record(self.instance).update(create=False, next_probe=0)
        self.mig.evacuation._silent_until.clear()

    def read_file(self, name):
        with open(self.chain.path(name), 'rb') as f:
            return f.read()

    def src_stashes(self):
        return migration.ConsoleLogMigration(
            self.src.conf, 'src', None).stashes(self.instance)

    def check_collected(self):
        self.assertEqual(crashes.digest(EXPECTED),
                         crashes.digest(self.read_file(SLOT)))
        self.assertEqual(self.after, self.read_file(REBOOTED))
        self.assertEqual([SLOT, REBOOTED],
                         [f.name for f in self.chain.history()])
        whole = EXPECTED + self.after + self.newest
        self.assertEqual(crashes.digest(whole), crashes.digest(
            self.mig.get_console_output(self.instance)))
        self.assertIsNone(self.mig.record(self.instance).load())
        self.assertEqual([], self.src_stashes())
        self.assertEqual([], [n for n in os.listdir(self.chain.directory)
                              if n.startswith(history_import.PARTIAL_PREFIX)])


class TestEvacuationCollection(EvacuationTestCase):

    def test_down_then_back_then_collected(self):
        self.evacuated_and_rebooted()
        # The old host is down: a short probe, then a backoff.
        self.assertEqual([], self.mig.retry_pending())
        data = self.mig.record(self.instance).load()
        self.assertEqual(cl_record.State.AWAITING_SOURCE, data['state'])
        self.assertEqual(1, data['probe_failures'])
        self.assertEqual(b'', self.read_file(SLOT))
        self.old_host_back()
        self.assertEqual([], self.mig.retry_pending(),
                         'probed again before the backoff ended')
        self.probe_now()
        self.assertEqual([self.instance], self.mig.retry_pending())
        self.check_collected()


class TestCollectionKilled(EvacuationTestCase):
    """SIGKILL of the collecting process at each step of the import."""

    def killed_at(self, point):
        self.evacuated_and_rebooted()
        self.old_host_back()
        dest = crashes.Destination(self, self.conf)
        dest.crash(self.instance, None, point, via='collect')
        # Whatever the step: the local history intact, the slot empty or
        # holding the old host's chain exactly once, the stash intact
        # unless the slot holds it.
        self.assertEqual(self.after, self.read_file(REBOOTED))
        slot = self.read_file(SLOT)
        stashes = self.src_stashes()
        if slot:
            self.assertEqual(crashes.digest(EXPECTED),
                             crashes.digest(slot))
        else:
            self.assertEqual(1, len(stashes))
        self.assertEqual([SLOT, REBOOTED],
                         [f.name for f in self.chain.history()])
        # The next periodic pass (nova-compute restarted) finishes it.
        self.probe_now()
        self.assertEqual([self.instance], self.mig.retry_pending())
        self.check_collected()
        return 'installed' if slot else 'absent'

    def test_killed_before_the_ledger(self):
        self.assertEqual('absent', self.killed_at('verified'))

    def test_killed_after_the_ledger_before_the_rename(self):
        self.assertEqual('absent', self.killed_at('ledger'))

    def test_killed_after_the_rename(self):
        self.assertEqual('installed', self.killed_at('renamed'))

    def test_killed_before_the_release(self):
        self.assertEqual('installed', self.killed_at('release-before'))
