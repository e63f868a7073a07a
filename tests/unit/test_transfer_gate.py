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

"""The import gate: at most ``max_concurrent_imports`` pulls at once.

The gate itself with threads that hold their slot until told; then real
pulls on ``fake://`` through it, a live migration's import deferred while
the gate is full, and what ``nova-consolelog status`` shows meanwhile.
"""

import json
import os
import threading
import time
import uuid

import fixtures
from oslotest import base as test_base

from nova_consolelog.cmd import status
from nova_consolelog.cmd import status_text
from nova_consolelog import exception
from nova_consolelog.handover import deferred
from nova_consolelog import transfer
from nova_consolelog.transfer import gate as cl_gate

from tests import fixtures as test_fixtures
from tests.unit import migration_cases

WAIT = 10


def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(0.01)


class Holder:
    """A thread holding a slot of ``gate`` until ``release``."""

    def __init__(self, gate, name, directory=None, order=None):
        self.name = name
        self.entered = threading.Event()
        self.go = threading.Event()
        self.error = None

        def run():
            try:
                with gate.slot(name, 'src', directory):
                    if order is not None:
                        order.append(name)
                    self.entered.set()
                    self.go.wait(WAIT)
            except Exception as e:
                self.error = e
                self.entered.set()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def release(self):
        self.go.set()
        self.thread.join(WAIT)


class TestImportGate(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def test_at_most_limit_run_first_come_first_served(self):
        gate = cl_gate.ImportGate(2)
        order = []
        holders = []
        for n in range(5):
            holders.append(Holder(gate, 'i%d' % n, order=order))
            if n < 2:
                holders[-1].entered.wait(WAIT)
            else:
                wait_for(lambda n=n: gate.waiting == n - 1, 'queued')
        self.assertEqual(2, gate.running)
        self.assertEqual(3, gate.waiting)
        self.assertFalse(holders[2].entered.is_set())
        for h in holders:
            h.release()
        self.assertEqual(['i0', 'i1', 'i2', 'i3', 'i4'], order)
        self.assertEqual(2, gate.most_running)
        self.assertEqual((0, 0), (gate.running, gate.waiting))
        self.assertEqual([None] * 5, [h.error for h in holders])

    def test_no_wait_raises_only_when_full(self):
        gate = cl_gate.ImportGate(1)
        with cl_gate.no_wait():
            with gate.slot('a', 'src'):
                self.assertEqual(1, gate.running)
                self.assertRaises(exception.ImportSlotBusy,
                                  gate.slot('b', 'src').__enter__)
        self.assertTrue(cl_gate.waiting_allowed())
        self.assertEqual((0, 0), (gate.running, gate.waiting))

    def test_slot_freed_when_the_pull_raises(self):
        gate = cl_gate.ImportGate(1)

        def fail():
            with gate.slot('a', 'src', self.dir):
                raise RuntimeError('boom')
        self.assertRaises(RuntimeError, fail)
        self.assertEqual(0, gate.running)
        self.assertEqual([], os.listdir(self.dir))

    def test_tickets_show_waiting_and_running(self):
        gate = cl_gate.ImportGate(1)
        first = Holder(gate, 'a', self.dir)
        first.entered.wait(WAIT)
        second = Holder(gate, 'b', self.dir)
        wait_for(lambda: len(cl_gate.read_tickets(self.dir)) == 2,
                 'two tickets')
        tickets = cl_gate.read_tickets(self.dir)
        self.assertEqual([('a', 'running'), ('b', 'waiting')],
                         [(t['instance_uuid'], t['state']) for t in tickets])
        self.assertEqual({'src'}, {t['source'] for t in tickets})
        first.release()
        second.entered.wait(WAIT)
        self.assertEqual([('b', 'running')],
                         [(t['instance_uuid'], t['state'])
                          for t in cl_gate.read_tickets(self.dir)])
        second.release()
        self.assertEqual([], cl_gate.read_tickets(self.dir))
        self.assertEqual([], os.listdir(self.dir))

    def test_status_never_shows_more_running_than_the_limit(self):
        # A finished pull's ticket is slow to go (a loaded disk): the
        # next pull may not say "running" before it is gone.
        gate = cl_gate.ImportGate(1)
        seen = []
        real_set, real_close = cl_gate.Ticket.set, cl_gate.Ticket.close

        def set_state(ticket, state):
            real_set(ticket, state)
            seen.append([t['state'] for t in cl_gate.read_tickets(self.dir)])

        def slow_close(ticket):
            time.sleep(0.2)
            real_close(ticket)
        self.useFixture(fixtures.MockPatchObject(cl_gate.Ticket, 'set',
                                                 set_state))
        self.useFixture(fixtures.MockPatchObject(cl_gate.Ticket, 'close',
                                                 slow_close))
        first = Holder(gate, 'a', self.dir)
        first.entered.wait(WAIT)
        second = Holder(gate, 'b', self.dir)
        wait_for(lambda: len(seen) == 2, 'the second ticket')
        first.release()
        second.entered.wait(WAIT)
        second.release()
        self.assertEqual([['running'], ['running', 'waiting'], ['running']],
                         seen)

    def test_status_reads_the_tickets_as_they_were_at_one_moment(self):
        # A pull finishes and the next one starts while status is between
        # two tickets: it must not see the first still running and the
        # second already running.
        gate = cl_gate.ImportGate(1)
        names = iter(uuid.UUID(int=n) for n in range(1, 100))
        self.useFixture(fixtures.MockPatch(
            'nova_consolelog.transfer.gate.uuid.uuid4',
            lambda: next(names)))
        first = Holder(gate, 'a', self.dir)
        first.entered.wait(WAIT)
        second = Holder(gate, 'b', self.dir)
        wait_for(lambda: len(cl_gate.read_tickets(self.dir)) == 2,
                 'the second ticket')
        real_load = cl_gate.fileutils.load_json
        loads = []

        def load_then_let_the_first_finish(path):
            data = real_load(path)
            loads.append(data['instance_uuid'])
            if len(loads) == 1:
                first.go.set()
                # Time for the first pull to leave and the second to be
                # marked running, unless reading holds them off.
                time.sleep(0.3)
            return data
        self.useFixture(fixtures.MockPatch(
            'nova_consolelog.fileutils.load_json',
            load_then_let_the_first_finish))
        seen = [(t['instance_uuid'], t['state'])
                for t in cl_gate.read_tickets(self.dir)]
        self.assertEqual(['a', 'b'], loads)
        self.assertEqual([('a', 'running'), ('b', 'waiting')], seen)
        first.thread.join(WAIT)
        second.entered.wait(WAIT)
        self.assertEqual(['running'], [t['state'] for t in
                                       cl_gate.read_tickets(self.dir)])
        second.release()
        self.assertEqual([], os.listdir(self.dir))

    def test_stale_ticket_of_a_dead_process_is_ignored_and_removed(self):
        # What a killed pull leaves: its ticket and an unlocked lock file.
        base = os.path.join(self.dir, uuid.uuid4().hex)
        with open(base + '.json', 'w') as f:
            json.dump({'instance_uuid': 'x', 'state': 'waiting',
                       'source': 'src', 'since': time.time()}, f)
        open(base + cl_gate.LOCK_SUFFIX, 'w').close()
        self.assertEqual([], cl_gate.read_tickets(self.dir))
        # It never takes a slot: a new pull runs at once and cleans up.
        gate = cl_gate.ImportGate(1)
        with gate.slot('y', 'src', self.dir):
            self.assertEqual(['y'], [t['instance_uuid'] for t in
                                     cl_gate.read_tickets(self.dir)])
            self.assertFalse(os.path.exists(base + '.json'))
        self.assertEqual([], os.listdir(self.dir))

    def test_unwritable_ticket_directory_never_fails_the_pull(self):
        path = os.path.join(self.dir, 'file')
        open(path, 'w').close()
        gate = cl_gate.ImportGate(1)
        with gate.slot('a', 'src', os.path.join(path, 'sub')):
            self.assertEqual(1, gate.running)
        self.assertEqual(0, gate.running)


class TestPullsThroughTheGate(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(test_fixtures.Hosts())
        self.src = self.hosts.start('src')
        # A limit no other test uses: a gate of its own in this process.
        self.conf, self.rpcapi = self.hosts.client(
            'dst', max_concurrent_imports=37)
        self.gate = cl_gate.gate_for(self.conf)
        self.tickets = cl_gate.host_tickets_dir(self.conf, 'dst')

    def _fill(self, n):
        holders = [Holder(self.gate, 'h%d' % i) for i in range(n)]
        for h in holders:
            h.entered.wait(WAIT)
            self.addCleanup(h.release)
        return holders

    def test_pull_waits_for_a_slot_visibly_then_installs(self):
        holders = self._fill(37)
        instance = str(uuid.uuid4())
        files = test_fixtures.sample_chain()
        test_fixtures.write_chain(self.src, instance, files)
        os.makedirs(os.path.join(self.conf.consolelog.instances_path,
                                 instance))
        results = []
        t = threading.Thread(target=lambda: results.append(transfer.pull(
            self.conf, self.rpcapi, 'src', instance, local_host='dst')))
        t.start()
        wait_for(lambda: self.gate.waiting == 1, 'the pull to queue')
        wait_for(lambda: cl_gate.read_tickets(self.tickets), 'its ticket')
        state = status.collect(self.conf)
        self.assertEqual([('waiting', 'src', 'dst')], [
            (i['state'], i['source'], i['recorded_by'])
            for i in state['instances'][instance]['imports']])
        self.assertIn('  import from src by dst (pid %d): waiting for a free '
                      'import slot' % os.getpid(),
                      '\n'.join(status_text.format_text(state)))
        self.assertEqual([], results)
        holders[0].release()
        t.join(WAIT)
        self.assertEqual(len(test_fixtures.chain_bytes(files)),
                         results[0].bytes)
        self.assertNotIn('imports', status.collect(
            self.conf)['instances'].get(instance, {}))

    def test_pull_inside_no_wait_raises_when_full(self):
        self._fill(37)
        instance = str(uuid.uuid4())
        test_fixtures.write_chain(self.src, instance,
                                  test_fixtures.sample_chain())
        with cl_gate.no_wait():
            self.assertRaises(exception.ImportSlotBusy, transfer.pull,
                              self.conf, self.rpcapi, 'src', instance,
                              local_host='dst')
        self.assertEqual(37, self.gate.running)


class TestDeferredLiveImport(migration_cases.MigrationTestBase):
    """post_live_migration_at_destination never waits for a slot."""

    def setUp(self):
        super().setUp()
        # A gate of its own (limit 1) for both hosts of the test.
        for host in (self.src, self.dst):
            host.conf.set_override('max_concurrent_imports', 1,
                                   group='consolelog')
        self.gate = cl_gate.gate_for(self.dst.conf)

    def test_full_gate_defers_the_import_and_reads_stay_whole(self):
        self.migrate_until_switchover()
        after = migration_cases.lines(0, 50, 'dst')
        self.dst.append(self.uuid, 'console.log', after)
        whole = self.before + after
        self.src.steps.post_live_migration_at_source(
            self.uuid, 'dst', False, domain=object())
        self.src.nova_cleanup(self.uuid)
        holder = Holder(self.gate, 'other')
        holder.entered.wait(WAIT)
        self.addCleanup(holder.release)

        self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', False)
        # Returned at once: the import waits in the background, the record
        # still says pulling, and reads take the older part from src.
        wait_for(lambda: self.gate.waiting == 1, 'the import to queue')
        self.assertEqual('pulling',
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertEqual(whole, self.dst.read(self.uuid))
        self.assertTrue(self.src.steps.has_stash(self.uuid))

        holder.release()
        wait_for(lambda: self.dst.steps.record(self.uuid).load() is None,
                 'the deferred import to finish')
        self.assertEqual(whole, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(1, self.gate.most_running)

    def test_free_gate_imports_inline(self):
        self.migrate_until_switchover()
        self.src.steps.post_live_migration_at_source(
            self.uuid, 'dst', False, domain=object())
        self.src.nova_cleanup(self.uuid)
        self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', False)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_background_failure_leaves_the_record_for_the_retry(self):
        class Failing:
            def __init__(self):
                self.calls = 0

            def run(self, *args):
                self.calls += 1
                if self.calls == 1:
                    raise exception.ImportSlotBusy(instance='x', limit=1)
                raise exception.TransferFailed(instance='x', host='src',
                                               reason='gone')
        importer = Failing()
        self.assertFalse(deferred.run_or_defer(importer, self.uuid, 'src',
                                               False))
        wait_for(lambda: importer.calls == 2, 'the background run')


class TestConnectionPool(test_base.BaseTestCase):

    def test_default_limit_leaves_most_of_the_pool(self):
        conf = test_fixtures.new_conf(messaging=True, project='nova')
        log = self.useFixture(fixtures.FakeLogger())
        self.assertEqual((16, 30), cl_gate.check_pool(conf))
        self.assertNotIn('rpc_conn_pool_size', log.output)

    def test_warns_when_pulls_could_take_most_of_the_pool(self):
        conf = test_fixtures.new_conf(messaging=True, project='nova')
        conf.set_override('max_concurrent_imports', 8, group='consolelog')
        log = self.useFixture(fixtures.FakeLogger())
        self.assertEqual((32, 30), cl_gate.check_pool(conf))
        self.assertIn('rpc_conn_pool_size 30', log.output)
