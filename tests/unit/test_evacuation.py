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

"""Evacuation, and the reserved history slot an owed import fills.

Two parts:

* the slot itself (``history_import``): reserved, read as empty, filled
  atomically by the import, with the ledger's exactly-once kept through a
  failure or a kill at every step;
* an evacuation with two hosts on fake:// (real endpoint, chain, stash and
  import code): the new host owes the older output, its QEMU starts keep
  their output behind the slot, the old host comes back and stashes, the
  periodic task collects. The test stands in for nova (spawn, destroy) and
  QEMU, as in test_migration.
"""

import logging
import os
import shutil
from unittest import mock
import uuid

import fixtures

from nova_consolelog import exception
from nova_consolelog.handover import evacuation
from nova_consolelog import history_import
from nova_consolelog import import_ledger
from nova_consolelog import transfer

from tests.unit import test_history_import
from tests.unit import test_migration

FILES = test_history_import.FILES
SOURCE_BYTES = test_history_import.SOURCE_BYTES
lines = test_migration.lines


class Killed(BaseException):
    """The process dies here: nothing after it runs, no handler undoes."""


class TestReservedSlot(test_history_import.ImportTestCase):

    def reserve(self):
        slot = history_import.reserve_slot(self.chain)
        self.chain.fill_slot = slot
        return slot

    def restart(self, output):
        """A QEMU start: the live log renamed behind the slot."""
        self.write('console.log', output)
        return self.chain.adopt_as_history([self.chain.path('console.log')])

    def imported(self, import_id='evac'):
        imp = self.begin(import_id, FILES)
        self.pull(imp, chunk=7)
        return imp

    def test_reserved_slot_is_empty_and_reads_as_nothing(self):
        self.assertEqual('console.history.000001', self.reserve())
        self.assertTrue(history_import.is_placeholder(
            self.chain, 'console.history.000001'))
        self.assertEqual(b'', self.chain.read_tail())
        self.write('console.log', b'since\n')
        self.assertEqual(b'since\n', self.chain.read_tail())

    def test_reserving_twice_takes_the_next_slot(self):
        self.assertEqual('console.history.000001', self.reserve())
        self.assertEqual('console.history.000002',
                         history_import.reserve_slot(self.chain))

    def test_import_fills_the_slot_before_later_history(self):
        slot = self.reserve()
        self.assertEqual(['console.history.000002'],
                         self.restart(b'boot 1\n'))
        self.restart(b'boot 2\n')
        self.write('console.log', b'live\n')
        self.assertEqual(slot, self.imported().commit())
        self.assertEqual(SOURCE_BYTES + b'boot 1\nboot 2\nlive\n',
                         self.chain.read_tail())
        self.assertFalse(history_import.is_placeholder(self.chain, slot))
        self.assertEqual(slot, import_ledger.Ledger(self.chain).installed(
            'evac'))

    def test_the_slot_is_read_from_a_callable_at_the_commit(self):
        imp = self.imported()
        # Reserved while the pull ran (a QEMU start meanwhile).
        holder = {}
        self.chain.fill_slot = lambda: holder.get('slot')
        holder['slot'] = history_import.reserve_slot(self.chain)
        self.restart(b'boot 1\n')
        self.assertEqual(holder['slot'], imp.commit())
        self.assertEqual(SOURCE_BYTES + b'boot 1\n', self.chain.read_tail())

    def test_first_import_into_an_empty_chain_sets_the_base(self):
        self.reserve()
        imp = self.begin('evac', FILES, base_offset=700)
        self.pull(imp)
        imp.commit()
        self.assertEqual(700, self.chain.base_offset())

    def test_a_filled_slot_is_not_filled_again(self):
        slot = self.reserve()
        self.restart(b'boot 1\n')
        self.assertEqual(slot, self.imported('first').commit())
        # A second stash is newer than the first: it cannot go before it,
        # and is never renamed over it.
        self.assertEqual('console.history.000003',
                         self.imported('second').commit())
        self.assertEqual(SOURCE_BYTES + b'boot 1\n' + SOURCE_BYTES,
                         self.chain.read_tail())

    def test_a_slot_retention_dropped_is_still_the_oldest_place(self):
        slot = self.reserve()
        self.conf.set_override('history_max_files', 2, 'consolelog')
        for boot in (b'1', b'2'):
            names = self.restart(b'boot ' + boot + b'\n')
            self.chain.apply_retention(keep=names[-1])
        self.assertFalse(os.path.exists(self.chain.path(slot)))
        self.assertEqual(slot, self.imported().commit())
        self.assertEqual(SOURCE_BYTES + b'boot 1\nboot 2\n',
                         self.chain.read_tail())

    def test_a_freed_slot_newer_than_history_is_not_used(self):
        self.chain.fill_slot = 'console.history.000001'
        self.write('console.history.000001', b'real history\n')
        self.assertEqual('console.history.000002',
                         self.imported().commit())

    def test_a_malformed_slot_name_is_ignored(self):
        for bad in ('console.log', '../x', 'console.history.1', 7,
                    'console.log.0', None):
            self.chain.fill_slot = bad
            self.assertIsNone(history_import.slot_to_fill(self.chain), bad)
        self.write('console.log', b'live\n')
        self.chain.fill_slot = 'console.log'
        self.assertEqual('console.history.000001', self.imported().commit())
        self.assertEqual(SOURCE_BYTES + b'live\n', self.chain.read_tail())

    def test_a_symlink_is_not_a_placeholder(self):
        os.symlink('/dev/null', self.chain.path('console.history.000001'))
        self.assertFalse(history_import.is_placeholder(
            self.chain, 'console.history.000001'))

    def test_a_slot_someone_created_is_refused(self):
        self.write('console.history.000001', b'')
        with mock.patch.object(self.chain, 'next_history_name',
                               return_value='console.history.000001'):
            self.assertRaises(exception.InstallFailed,
                              history_import.reserve_slot, self.chain)

    def test_a_failure_at_every_step_keeps_or_installs(self):
        step = 0
        outcomes = set()
        while True:
            step += 1
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            slot = self.reserve()
            self.restart(b'boot 1\n')
            imp = self.imported()
            before = self.visible()
            committed, where = self.commit_failing_at(step, imp)
            if where is None:
                break
            if not committed:
                # Exactly as before: the slot still empty, in its place.
                self.assertEqual(before, self.visible(), where)
                self.assertTrue(history_import.is_placeholder(
                    self.chain, slot), where)
                outcomes.add('kept')
                imp.close()
                again = self.begin('evac', FILES)
                self.pull(again, chunk=100)
                self.assertEqual(slot, again.commit(), where)
            else:
                outcomes.add('installed')
            self.assertEqual(SOURCE_BYTES + b'boot 1\n',
                             self.chain.read_tail(), where)
        self.assertGreater(step, 5)
        self.assertIn('kept', outcomes)

    def _killed_at(self, target, name):
        slot = self.reserve()
        self.restart(b'boot 1\n')
        imp = self.imported()
        with mock.patch.object(target, name, side_effect=Killed):
            self.assertRaises(Killed, imp.commit)
        imp.close()
        return slot

    def test_killed_before_the_rename_then_resumed(self):
        # The ledger names the slot, which does not hold the staging
        # file's inode: not installed; the re-run installs it once.
        slot = self._killed_at(history_import.os, 'rename')
        self.assertTrue(history_import.is_placeholder(self.chain, slot))
        self.assertIsNone(import_ledger.Ledger(self.chain).installed(
            'evac'))
        again = self.begin('evac', FILES)
        self.assertIsNone(again.installed)
        self.pull(again)
        self.assertEqual(slot, again.commit())
        self.assertEqual(SOURCE_BYTES + b'boot 1\n', self.chain.read_tail())

    def test_killed_after_the_rename_is_found_installed(self):
        slot = self._killed_at(self.chain, 'fsync')
        again = self.begin('evac', FILES)
        self.assertEqual(slot, again.installed)
        self.assertEqual(SOURCE_BYTES + b'boot 1\n', self.chain.read_tail())


class EvacuationTestBase(test_migration.MigrationTestBase):
    """``src`` ran the guest; it is evacuated to ``dst`` while down."""

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='nova_consolelog', level=logging.DEBUG))
        self.useFixture(fixtures.MockPatchObject(evacuation, 'PROBE_TIMEOUT',
                                                 1))
        self.src.conf.set_override('rpc_timeout', 2, group='consolelog')
        self.dst.conf.set_override('rpc_timeout', 2, group='consolelog')

    def spawn(self, host):
        """nova's spawn: the directory and an empty log, then QEMU."""
        os.makedirs(host.instance_dir(self.uuid), exist_ok=True)
        host.steps.before_qemu_start(self.uuid)
        host.qemu_start(self.uuid)

    def reboot(self, host, boot):
        host.steps.before_qemu_start(self.uuid)
        host.qemu_start(self.uuid)
        out = lines(0, 20, 'boot%d' % boot)
        host.append(self.uuid, 'console.log', out)
        return out

    def history(self, host):
        return sorted(n for n in os.listdir(host.instance_dir(self.uuid))
                      if n.startswith('console.history.0'))

    def src_down(self):
        self.hosts.servers['src'].stop()

    def src_back(self):
        """The old host is back: init_host's destroy of its copy."""
        self.hosts.servers['src'].start()
        stash_id = self.src.steps.evacuated_away(self.uuid, 'dst')
        self.src.nova_cleanup(self.uuid)
        return stash_id

    def probe_now(self):
        """The backoff is over (for the record and its host)."""
        self.dst.steps.record(self.uuid).update(create=False, next_probe=0)
        self.dst.steps.evacuation._silent_until.clear()


class TestNonSharedEvacuation(EvacuationTestBase):

    def evacuate(self):
        self.src_down()
        self.assertTrue(self.dst.steps.evacuated_here(self.uuid, 'src'))
        # nova's instance_on_disk looked before: nothing created here.
        self.assertFalse(os.path.exists(self.dst.instance_dir(self.uuid)))
        self.spawn(self.dst)
        first = lines(0, 30, 'dst')
        self.dst.append(self.uuid, 'console.log', first)
        return first

    def test_collected_late_and_merged_before_the_new_output(self):
        first = self.evacuate()
        record = self.dst.steps.record(self.uuid).load()
        self.assertEqual('awaiting_source', record['state'])
        self.assertEqual('console.history.000001', record['reserved'])
        second = self.reboot(self.dst, 2)
        third = self.reboot(self.dst, 3)
        # Only this host's part while the old host is away; no peer call.
        self.assertEqual(first + second + third, self.dst.read(self.uuid))
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual(1, self.dst.steps.record(self.uuid).load()[
            'probe_failures'])

        self.assertIsNotNone(self.src_back())
        stash = self.src.steps.stashes(self.uuid)[0]
        self.assertEqual('dst', stash.destination)
        self.probe_now()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        whole = self.before + first + second + third
        self.assertEqual(whole, self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001', 'console.history.000002',
                          'console.history.000003'], self.history(self.dst))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertIn('Collected the console history of instance %s left on '
                      'host src by its evacuation, %d byte(s)' % (
                          self.uuid, len(self.before)), self.logger.output)
        # Nothing more to do; another pass changes nothing.
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual(whole, self.dst.read(self.uuid))

    def test_probes_are_short_and_back_off(self):
        self.evacuate()
        calls = []
        real = self.dst.rpcapi.list_stashes

        def counting(*args, **kwargs):
            calls.append(kwargs.get('timeout'))
            return real(*args, **kwargs)

        self.dst.rpcapi.list_stashes = counting
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual([evacuation.PROBE_TIMEOUT], calls)
        # Backed off: the next passes do not ask the silent host.
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual(1, len(calls))
        record = self.dst.steps.record(self.uuid).load()
        self.probe_now()
        self.assertEqual([], self.dst.steps.retry_pending())
        later = self.dst.steps.record(self.uuid).load()
        self.assertEqual(2, later['probe_failures'])
        self.assertGreater(later['next_probe'] - record['next_probe'],
                           self.dst.conf.consolelog.reaper_interval / 2)

    def test_old_host_back_without_a_stash_yet(self):
        self.evacuate()
        self.hosts.servers['src'].start()
        self.assertEqual([], self.dst.steps.retry_pending())
        record = self.dst.steps.record(self.uuid).load()
        self.assertEqual('awaiting_source', record['state'])
        self.assertEqual(0, record['probe_failures'])
        # Its init_host stashes now; the next pass collects.
        self.src.steps.evacuated_away(self.uuid, 'dst')
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())

    def test_given_up_after_the_max_age(self):
        first = self.evacuate()
        self.dst.conf.set_override('evacuation_collect_max_age', 60,
                                   group='consolelog')
        self.dst.steps.record(self.uuid).update(since=1)
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertIn('Giving up collecting the console history of '
                      'instance %s from src' % self.uuid,
                      self.logger.output)
        # The empty slot went with the record; the output here stays.
        self.assertEqual([], self.history(self.dst))
        self.assertEqual(first, self.dst.read(self.uuid))

    def test_max_age_defaults_to_the_stash_expiry(self):
        self.assertEqual(self.dst.conf.consolelog.stash_expiry,
                         evacuation.collect_max_age(self.dst.conf))
        self.dst.conf.set_override('evacuation_collect_max_age', 5,
                                   group='consolelog')
        self.assertEqual(5, evacuation.collect_max_age(self.dst.conf))

    def test_instance_deleted_meanwhile(self):
        self.evacuate()
        self.dst.steps.instance_deleted(self.uuid)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.src_back()
        self.assertEqual([], self.dst.steps.retry_pending())
        # The old host's stash waits for its expiry; nobody pulls it.
        self.assertTrue(self.src.steps.has_stash(self.uuid))

    def test_pull_failure_then_reads_merge_both_parts(self):
        first = self.evacuate()
        second = self.reboot(self.dst, 2)
        self.src_back()
        self.probe_now()
        with mock.patch.object(transfer, 'pull',
                               side_effect=exception.TransferFailed(
                                   instance=self.uuid, host='src',
                                   reason='injected')):
            self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual('pulling',
                         self.dst.steps.record(self.uuid).load()['state'])
        # The older part from the old host, ours after it (our history
        # behind the slot included).
        self.assertEqual(self.before + first + second,
                         self.dst.read(self.uuid))
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before + first + second,
                         self.dst.read(self.uuid))

    def test_installed_but_not_released_is_released_later(self):
        first = self.evacuate()
        self.src_back()
        self.probe_now()
        with mock.patch.object(self.dst.rpcapi, 'release',
                               side_effect=exception.TransferFailed(
                                   instance=self.uuid, host='src',
                                   reason='injected')):
            self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual('installed',
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        self.dst.steps.retry_pending()
        # Said once, at the install; the later pass only released.
        self.assertEqual(1, self.logger.output.count(
            'Collected the console history of instance %s' % self.uuid))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before + first, self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.dst))

    def test_migrating_on_gives_the_collection_up(self):
        first = self.evacuate()
        self.dst.steps.live_migration_started(self.uuid, 'third', False)
        self.assertIn('Instance %s migrates to third before its console '
                      'output from before its evacuation was collected from '
                      'src' % self.uuid, self.logger.output)
        self.assertEqual('source',
                         self.dst.steps.record(self.uuid).load()['role'])
        # The empty slot goes with the chain as zero bytes.
        self.dst.steps.post_live_migration_at_source(self.uuid, 'third',
                                                     False)
        stash = self.dst.steps.stashes(self.uuid)[0]
        self.assertEqual(first, stash.chain.read_tail(1 << 20))

    def test_only_the_current_host_may_pull(self):
        self.evacuate()
        self.src_back()
        stash = self.src.steps.stashes(self.uuid)[0]
        self.assertRaises(exception.HandoverRefused,
                          self.dst.rpcapi.open_transfer, {}, 'src',
                          self.uuid, 'elsewhere', stash_id=stash.stash_id)

    def test_no_source_or_same_host_owes_nothing(self):
        self.assertFalse(self.dst.steps.evacuated_here(self.uuid, None))
        self.assertFalse(self.dst.steps.evacuated_here(self.uuid, 'dst'))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())

    def test_old_host_with_nothing_to_stash(self):
        shutil.rmtree(self.src.instance_dir(self.uuid))
        self.assertIsNone(self.src.steps.evacuated_away(self.uuid, 'dst'))
        self.assertFalse(self.src.steps.has_stash(self.uuid))


class TestSharedEvacuation(EvacuationTestBase):

    shared = True

    def test_the_chain_stays_in_place(self):
        # The guest is rebuilt on dst over the same directory: no record,
        # the spawn's start renames the old host's chain into history.
        self.src_down()
        self.assertFalse(self.dst.steps.evacuated_here(self.uuid, 'src'))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.spawn(self.dst)
        after = lines(0, 10, 'dst')
        self.dst.append(self.uuid, 'console.log', after)
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertTrue(self.history(self.dst))
        self.assertEqual([], self.dst.steps.retry_pending())


class TestManyGuestsOneSilentHost(EvacuationTestBase):

    def test_one_probe_per_silent_host(self):
        uuids = [self.uuid] + [str(uuid.uuid4()) for _ in range(3)]
        self.src_down()
        for other in uuids:
            self.assertTrue(self.dst.steps.evacuated_here(other, 'src'))
        calls = []
        real = self.dst.rpcapi.list_stashes

        def counting(*args, **kwargs):
            calls.append(args[2])
            return real(*args, **kwargs)

        self.dst.rpcapi.list_stashes = counting
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual(1, len(calls))
        # Back: every guest's record is probed again and collected.
        self.src_back()
        for other in uuids:
            self.dst.steps.record(other).update(next_probe=0)
        self.dst.steps.evacuation._silent_until.clear()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        # Four probes, and the import's own listing of the stash.
        self.assertEqual(6, len(calls))
        for other in uuids[1:]:
            # Nothing stashed for them (no chain there): still owed.
            self.assertEqual('awaiting_source', self.dst.steps.record(
                other).load()['state'])
