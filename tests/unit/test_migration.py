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

"""Tests of the live-migration steps with two hosts on fake://.

Both hosts run the real endpoint, chain and stash code, each with its own
instance directory (or one shared directory); the steps are called in
nova's order, and the test stands in for QEMU (virtlogd truncation at the
incoming QEMU's start, new output) and for nova's cleanup.
"""

import os
import shutil
import time
from unittest import mock
import uuid

import fixtures
import oslo_messaging

from nova_consolelog import exception
from nova_consolelog.handover import catching
from nova_consolelog.handover import record as cl_record

from tests.unit import migration_cases

lines = migration_cases.lines


class TestNonSharedMigration(migration_cases.MigrationTestBase):

    def test_whole_log_on_every_read_and_after_import(self):
        whole = self.guest_prints_on_dst(50)
        # The window: the guest runs on dst, nothing imported yet.
        self.assertEqual(whole, self.src.read(self.uuid))
        self.assertEqual(whole, self.dst.read(self.uuid))

        self.src.steps.post_live_migration_at_source(
            self.uuid, 'dst', False, domain=object())
        self.src.nova_cleanup(self.uuid)
        self.assertEqual(whole, self.src.read(self.uuid))
        self.assertEqual(whole, self.dst.read(self.uuid))

        self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', False)
        self.assertEqual(whole, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        history = [n for n in os.listdir(self.dst.instance_dir(self.uuid))
                   if n.startswith('console.history.')]
        self.assertEqual(['console.history.000001'], history)
        # length keeps the last N lines, as nova's API does.
        self.assertEqual(b'\n'.join(whole.split(b'\n')[-3:]),
                         self.dst.read(self.uuid, length=3))

    def test_round_trip_keeps_everything(self):
        whole = self.before
        for a, b in ((self.src, self.dst), (self.dst, self.src),
                     (self.src, self.dst)):
            a.steps.live_migration_started(self.uuid, b.name, False)
            b.steps.pre_live_migration(self.uuid, a.name, False)
            b.qemu_start(self.uuid)
            new = lines(len(whole), len(whole) + 40, b.name)
            b.append(self.uuid, 'console.log', new)
            whole += new
            a.steps.post_live_migration_at_source(self.uuid, b.name, False)
            a.nova_cleanup(self.uuid)
            b.steps.post_live_migration_at_destination(
                self.uuid, a.name, False)
            self.assertEqual(whole, b.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_source_unreachable_then_retried(self):
        self.migrate_until_switchover()
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.src.nova_cleanup(self.uuid)
        self.hosts.servers['src'].stop()
        self.dst.conf.set_override('rpc_timeout', 1, group='consolelog')
        self.dst.conf.set_override('pull_timeout', 2, group='consolelog')
        # Never raises into the migration; the import stays owed.
        self.assertIsNone(self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', False))
        self.assertEqual('pulling',
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.src.steps.has_stash(self.uuid))

        self.hosts.servers['src'].start()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_installed_but_not_released_is_released_by_the_retry(self):
        """A crash (or a silent source) between install and release."""
        whole = self.guest_prints_on_dst(20)
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.src.nova_cleanup(self.uuid)
        with mock.patch.object(self.dst.rpcapi, 'release',
                               side_effect=oslo_messaging.MessagingTimeout):
            self.dst.steps.post_live_migration_at_destination(
                self.uuid, 'src', False)
        self.assertEqual('installed',
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        self.assertEqual(whole, self.dst.read(self.uuid))
        # The retry finds the import in the ledger: it releases only.
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(whole, self.dst.read(self.uuid))
        history = [n for n in os.listdir(self.dst.instance_dir(self.uuid))
                   if n.startswith('console.history.0')]
        self.assertEqual(['console.history.000001'], history)

    def test_stash_handed_to_the_destination_only(self):
        self.migrate_until_switchover()
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.src.nova_cleanup(self.uuid)
        stash = self.src.steps.stashes(self.uuid)[0]
        self.assertEqual('dst', stash.destination)
        self.assertRaises(exception.HandoverRefused,
                          self.dst.rpcapi.open_transfer, {}, 'src',
                          self.uuid, 'elsewhere', stash_id=stash.stash_id)

    def test_rollback_at_source_puts_the_stash_back(self):
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.assertFalse(os.path.exists(os.path.join(
            self.src.instance_dir(self.uuid), 'console.log')))
        self.src.steps.rollback_at_source(self.uuid)
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before, self.src.read(self.uuid))

    def test_disabled_does_nothing(self):
        self.src.conf.set_override('enabled', False, group='consolelog')
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before, self.src.read(self.uuid))

    def test_shutoff_timeout_still_stashes(self):
        self.src.steps.live.wait_for_shutoff = lambda domain, timeout: False
        self.src.steps.post_live_migration_at_source(
            self.uuid, 'dst', False, domain=object())
        self.assertTrue(self.src.steps.has_stash(self.uuid))

    def test_plain_read_is_the_chain_read(self):
        chain = self.src.steps.chain(self.uuid)
        self.assertEqual(chain.read_tail(1 << 20, 7),
                         self.src.read(self.uuid, length=7))

    def test_malformed_uuid_never_raises_from_a_step(self):
        self.assertIsNone(self.src.steps.post_live_migration_at_source(
            '../etc', 'dst', False))


class TestSharedMigration(migration_cases.MigrationTestBase):

    shared = True

    def handed_over(self, whole):
        """Both hosts read ``whole``; after the hand-over dst still does."""
        self.assertEqual(whole, self.dst.read(self.uuid))
        self.assertEqual(whole, self.src.read(self.uuid))
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', True)
        self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', True)
        self.assertEqual(whole, self.dst.read(self.uuid))

    def test_chain_survives_the_incoming_qemu_and_is_installed(self):
        self.handed_over(self.guest_prints_on_dst(30))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_each_host_keeps_its_own_record(self):
        # One stash root on shared storage: the records must not collide.
        self.migrate_until_switchover()
        self.assertEqual('source',
                         self.src.steps.record(self.uuid).load()['role'])
        self.assertEqual('destination',
                         self.dst.steps.record(self.uuid).load()['role'])
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', True)
        self.assertIsNone(self.src.steps.record(self.uuid).load())
        self.assertIsNotNone(self.dst.steps.record(self.uuid).load())

    def test_rollback_restores_the_chain_byte_for_byte(self):
        names = sorted(os.listdir(self.src.instance_dir(self.uuid)))
        self.dst.steps.pre_live_migration(self.uuid, 'src', True)
        self.assertEqual([], os.listdir(self.src.instance_dir(self.uuid)))
        self.dst.steps.rollback_at_destination(self.uuid, 'src', True)
        self.assertEqual(names,
                         sorted(os.listdir(self.src.instance_dir(self.uuid))))
        self.assertEqual(self.before, self.src.read(self.uuid))

    def test_rollback_after_the_incoming_qemu_started(self):
        # virtlogd on the source holds console.log open; after the move
        # aside it keeps writing into the stashed file, and after the
        # rollback into the restored one.
        path = os.path.join(self.src.instance_dir(self.uuid), 'console.log')
        with open(path, 'ab', buffering=0) as virtlogd:
            self.migrate_until_switchover()
            virtlogd.write(b'during\r\n')
            self.dst.steps.rollback_at_destination(self.uuid, 'src', True)
            virtlogd.write(b'after\r\n')
        self.assertEqual(self.before + b'during\r\nafter\r\n',
                         self.src.read(self.uuid))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_rollback_keeps_output_of_the_failed_incoming_qemu(self):
        path = os.path.join(self.src.instance_dir(self.uuid), 'console.log')
        with open(path, 'ab', buffering=0) as virtlogd:
            self.migrate_until_switchover()
            self.dst.append(self.uuid, 'console.log', b'incoming\r\n')
            self.dst.steps.rollback_at_destination(self.uuid, 'src', True)
            virtlogd.write(b'after\r\n')
        whole = self.src.read(self.uuid)
        self.assertEqual(len(self.before) + len(b'after\r\nincoming\r\n'),
                         len(whole))
        self.assertIn(b'incoming\r\n', whole)
        self.assertTrue(whole.startswith(self.before + b'after\r\n'))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_rollback_after_the_source_rolled_over(self):
        # The source's virtlogd rotated after the move aside: it renamed
        # the incoming QEMU's empty console.log to .0 and writes a new
        # console.log, while the stashed one is no longer written.
        self.migrate_until_switchover()
        path = self.src.instance_dir(self.uuid)
        os.rename(os.path.join(path, 'console.log'),
                  os.path.join(path, 'console.log.0'))
        self.src.append(self.uuid, 'console.log', b'rolled\r\n')
        self.dst.steps.rollback_at_destination(self.uuid, 'src', True)
        self.src.append(self.uuid, 'console.log', b'after\r\n')
        self.assertEqual(self.before + b'rolled\r\nafter\r\n',
                         self.src.read(self.uuid))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_reads_include_what_the_catcher_keeps(self):
        """The source rolls over before the incoming QEMU truncates.

        Its last lines then live only in the catcher's link: every read,
        on either host, must have them, in their place.
        """
        self.src.steps.live_migration_started(self.uuid, 'dst', True)
        self.dst.steps.pre_live_migration(self.uuid, 'src', True)
        rolled = lines(300, 320, 'src')
        self.src.append(self.uuid, 'console.log', rolled)
        catch_root = os.path.join(self.dst.conf.consolelog.stash_path,
                                  catching.CATCH_DIR)
        deadline = time.monotonic() + 10
        while not any(files for _d, _s, files in os.walk(catch_root)):
            self.assertLess(time.monotonic(), deadline, 'nothing caught')
            time.sleep(0.05)
        self.dst.qemu_start(self.uuid)
        after = lines(0, 30, 'dst')
        self.dst.append(self.uuid, 'console.log', after)
        self.handed_over(self.before + rolled + after)


class TestUnreachablePeer(migration_cases.MigrationTestBase):

    def test_reads_do_not_wait_for_a_silent_peer_every_time(self):
        self.migrate_until_switchover()
        self.hosts.servers['src'].stop()
        self.dst.conf.set_override('rpc_timeout', 1, group='consolelog')
        calls = []
        real = self.dst.rpcapi.list_stashes

        def counting(*args, **kwargs):
            calls.append(args)
            return real(*args, **kwargs)

        self.dst.rpcapi.list_stashes = counting
        self.dst.append(self.uuid, 'console.log', b'new\r\n')
        self.assertEqual(b'new\r\n', self.dst.read(self.uuid))
        self.assertEqual(b'new\r\n', self.dst.read(self.uuid))
        self.assertEqual(1, len(calls))

    def test_owed_import_is_given_up_after_the_stash_expiry(self):
        self.migrate_until_switchover()
        record = self.dst.steps.record(self.uuid)
        record.update(state='pulling', created=0)
        self.dst.conf.set_override('stash_expiry', 60, group='consolelog')
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertIsNone(record.load())


class TestNewQemuOnTheSameHost(migration_cases.MigrationTestBase):
    """Reboots, stops and starts: every QEMU start truncates the log."""

    def test_every_boot_is_kept_in_order(self):
        whole = self.before
        for boot in range(3):
            names = self.src.steps.before_qemu_start(self.uuid)
            self.assertTrue(names)
            self.src.qemu_start(self.uuid)
            new = lines(0, 30, 'boot%d' % boot)
            self.src.append(self.uuid, 'console.log', new)
            whole += new
            self.assertEqual(whole, self.src.read(self.uuid))
        # The guest's bytes only: no separator was written.
        self.assertEqual(len(whole), len(self.src.read(self.uuid)))

    def test_nothing_to_keep(self):
        other = str(uuid.uuid4())
        self.assertIsNone(self.src.steps.before_qemu_start(other))
        self.src.append(other, 'console.log', b'')
        self.assertIsNone(self.src.steps.before_qemu_start(other))
        self.assertEqual(['console.log'],
                         os.listdir(self.src.instance_dir(other)))

    def test_retention_applies(self):
        self.src.conf.set_override('history_max_files', 2, 'consolelog')
        for boot in range(3):
            self.src.steps.before_qemu_start(self.uuid)
            self.src.qemu_start(self.uuid)
            self.src.append(self.uuid, 'console.log',
                            lines(0, 5, 'boot%d' % boot))
        self.src.steps.before_qemu_start(self.uuid)
        history = sorted(n for n in os.listdir(self.src.instance_dir(
            self.uuid)) if n.startswith('console.history.0'))
        self.assertEqual(2, len(history))
        self.assertEqual(lines(0, 5, 'boot1') + lines(0, 5, 'boot2'),
                         self.src.read(self.uuid))

    def test_kept_behind_a_reserved_slot_while_an_import_is_owed(self):
        # A reboot at the destination before the import: the output since
        # the migration is kept, and the import still comes first.
        self.migrate_until_switchover()
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst', False)
        self.src.nova_cleanup(self.uuid)
        self.dst.steps.record(self.uuid).update(state='pulling')
        since = lines(0, 5, 'dst')
        self.dst.append(self.uuid, 'console.log', since)
        self.assertEqual(['console.history.000002'],
                         self.dst.steps.before_qemu_start(self.uuid))
        self.assertEqual('console.history.000001',
                         self.dst.steps.record(self.uuid).load()['reserved'])
        self.dst.qemu_start(self.uuid)
        newest = lines(0, 5, 'dst-boot2')
        self.dst.append(self.uuid, 'console.log', newest)
        # Before the import: the source's part, then ours, in order.
        self.assertEqual(self.before + since + newest,
                         self.dst.read(self.uuid))
        self.dst.steps.post_live_migration_at_destination(
            self.uuid, 'src', False)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertEqual(self.before + since + newest,
                         self.dst.read(self.uuid))
        self.assertEqual(
            ['console.history.000001', 'console.history.000002',
             'console.log'],
            sorted(n for n in os.listdir(self.dst.instance_dir(self.uuid))
                   if n.startswith('console.')))

    def test_skipped_while_a_shared_import_is_owed(self):
        self.migrate_until_switchover()
        self.dst.steps.record(self.uuid).update(shared=True)
        self.dst.append(self.uuid, 'console.log', lines(0, 5, 'dst'))
        self.assertIsNone(self.dst.steps.before_qemu_start(self.uuid))
        self.assertEqual(['console.log'],
                         os.listdir(self.dst.instance_dir(self.uuid)))


class TestRebuildOnTheSameHost(migration_cases.MigrationTestBase):
    """nova's rebuild deletes the instance directory between two boots."""

    def test_the_chain_outlives_the_instance_directory(self):
        self.src.steps.before_qemu_start(self.uuid)
        self.src.qemu_start(self.uuid)
        second = lines(0, 10, 'boot1')
        self.src.append(self.uuid, 'console.log', second)
        stash_id = self.src.steps.before_instance_dir_removed(self.uuid)
        self.assertIsNotNone(stash_id)
        # nova's delete_instance_files: rename to _del, then rmtree.
        shutil.rmtree(self.src.instance_dir(self.uuid))
        self.assertTrue(self.src.steps.after_instance_dir_removed(
            self.uuid, stash_id))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before + second, self.src.read(self.uuid))
        # spawn: a new QEMU, history kept as at any start.
        self.src.steps.before_qemu_start(self.uuid)
        self.src.qemu_start(self.uuid)
        third = lines(0, 10, 'boot2')
        self.src.append(self.uuid, 'console.log', third)
        self.assertEqual(self.before + second + third,
                         self.src.read(self.uuid))

    def test_nothing_to_keep(self):
        other = str(uuid.uuid4())
        self.assertIsNone(self.src.steps.before_instance_dir_removed(other))
        self.assertFalse(self.src.steps.after_instance_dir_removed(
            other, 'no-such-stash'))
        self.assertFalse(os.path.exists(self.src.instance_dir(other)))


class TestColdMigration(migration_cases.MigrationTestBase):
    """Resize and cold migration, in nova's order, confirmed or reverted.

    The test stands in for nova: it renames the source's instance
    directory to ``<dir>_resize`` (migrate_disk_and_power_off), starts the
    QEMU on the destination (virtlogd truncates), deletes ``<dir>_resize``
    at the confirm, and at a revert destroys the destination's copy and
    renames ``<dir>_resize`` back before the source's QEMU starts.
    """

    def resize_dir(self, host):
        return host.instance_dir(self.uuid) + '_resize'

    def history(self, host):
        return sorted(n for n in os.listdir(host.instance_dir(self.uuid))
                      if n.startswith('console.history.0'))

    def migrate(self, src, dst):
        os.rename(src.instance_dir(self.uuid), self.resize_dir(src))
        if src is dst:
            os.makedirs(src.instance_dir(self.uuid))
        self.assertIsNotNone(
            src.steps.cold_migration_started(self.uuid, dst.name))
        self.assertEqual([], os.listdir(self.resize_dir(src)))

    def finish(self, src, dst):
        dst.steps.cold_migration_finishing(self.uuid, src.name)
        dst.steps.before_qemu_start(self.uuid)
        dst.qemu_start(self.uuid)
        after = lines(0, 30, 'dst')
        dst.append(self.uuid, 'console.log', after)
        return after

    def confirm(self, src):
        shutil.rmtree(self.resize_dir(src))
        src.steps.cold_migration_confirmed(self.uuid)

    def revert(self, src, dst):
        dst.steps.cold_migration_abandoned(self.uuid)
        if src is not dst:
            dst.nova_cleanup(self.uuid)
        # nova's finish_revert_migration on the source.
        src.nova_cleanup(self.uuid)
        os.rename(self.resize_dir(src), src.instance_dir(self.uuid))
        self.assertEqual(1, src.steps.cold_migration_reverted(self.uuid))
        src.steps.before_qemu_start(self.uuid)
        src.qemu_start(self.uuid)
        again = lines(0, 20, 'reverted')
        src.append(self.uuid, 'console.log', again)
        return again

    def assertInstalledAndHeldUntilConfirm(self, after):
        """The destination installed the source's part; nothing is owed.

        The source holds its stash for a revert until the confirm, which
        deletes it; the destination's console is whole before and after.
        """
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.dst))
        held = self.src.steps.held_stashes(self.uuid)
        self.assertEqual(['dst'], [s.installed_by for s in held])
        self.confirm(self.src)
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))

    def test_to_another_host_then_confirm(self):
        self.migrate(self.src, self.dst)
        self.assertEqual(self.before, self.src.read(self.uuid))
        after = self.finish(self.src, self.dst)
        # Before the install the destination reads the source's part.
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertTrue(self.dst.steps.cold_migration_finished(
            self.uuid, 'src'))
        self.assertInstalledAndHeldUntilConfirm(after)
        # A retry finds nothing owed.
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual(['console.history.000001'], self.history(self.dst))

    def _resize_then_revert(self, dst):
        """Resized to ``dst``, installed there, then reverted.

        The source's log goes on; nothing is held or owed anywhere.
        """
        self.migrate(self.src, dst)
        self.finish(self.src, dst)
        dst.steps.cold_migration_finished(self.uuid, 'src')
        again = self.revert(self.src, dst)
        self.assertEqual(self.before + again, self.src.read(self.uuid))
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual([], dst.steps.retry_pending())

    def test_to_another_host_then_revert(self):
        self._resize_then_revert(self.dst)

    def test_same_host_resize_then_confirm(self):
        self.migrate(self.src, self.src)
        self.assertEqual(self.before, self.src.read(self.uuid))
        after = self.finish(self.src, self.src)
        self.assertTrue(self.src.steps.cold_migration_finished(
            self.uuid, 'src'))
        self.assertIsNone(self.src.steps.record(self.uuid).load())
        # Installed and held: read once, not twice.
        self.assertEqual(self.before + after, self.src.read(self.uuid))
        self.assertEqual(1, len(self.src.steps.held_stashes(self.uuid)))
        self.confirm(self.src)
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))
        self.assertEqual(self.before + after, self.src.read(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.src))

    def test_same_host_resize_then_revert(self):
        self._resize_then_revert(self.src)

    def _source_away(self):
        self.hosts.servers['src'].stop()
        self.dst.conf.set_override('rpc_timeout', 1, group='consolelog')
        self.dst.conf.set_override('pull_timeout', 2, group='consolelog')

    def _pull_owed(self):
        """Resized while the source is away: the destination owes a pull.

        Returns what the guest printed on the destination.
        """
        self.migrate(self.src, self.dst)
        after = self.finish(self.src, self.dst)
        self._source_away()
        self.assertIsNone(self.dst.steps.cold_migration_finished(
            self.uuid, 'src'))
        return after

    def _finish_died(self):
        """nova-compute died in the finish, after its guest started.

        Returns what the guest printed on the destination. The record was
        written by the process that died: this one is its restart.
        """
        self.migrate(self.src, self.dst)
        after = self.finish(self.src, self.dst)
        # While the finish runs (the same process), nothing is started.
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertEqual('migrating',
                         self.dst.steps.record(self.uuid).load()['state'])
        self.useFixture(fixtures.MockPatchObject(
            cl_record, 'PROCESS_TOKEN', 'the-restarted-process'))
        return after

    def _reboot_while_owed(self):
        """The resized guest reboots while the import is owed.

        Its output goes behind the slot the start reserves for the import;
        returns what the new boot printed.
        """
        self.assertEqual(['console.history.000002'],
                         self.dst.steps.before_qemu_start(self.uuid))
        self.dst.qemu_start(self.uuid)
        newest = lines(0, 10, 'dst-boot2')
        self.dst.append(self.uuid, 'console.log', newest)
        return newest

    def test_finish_died_then_the_periodic_task_pulls(self):
        after = self._finish_died()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertInstalledAndHeldUntilConfirm(after)

    def test_finish_died_then_a_reboot_before_the_periodic_task(self):
        # The operator reboots the guest before any retry: its output
        # since the resize is kept behind the owed import's slot.
        after = self._finish_died()
        newest = self._reboot_while_owed()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before + after + newest,
                         self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001', 'console.history.000002'],
                         self.history(self.dst))

    def test_failed_pull_retried(self):
        after = self._pull_owed()
        record = self.dst.steps.record(self.uuid).load()
        self.assertEqual('pulling', record['state'])
        self.assertTrue(record['hold'])
        self.hosts.servers['src'].start()
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        # Still held until the confirm.
        self.assertEqual(1, len(self.src.steps.held_stashes(self.uuid)))
        self.confirm(self.src)
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))

    def test_reboot_while_the_pull_is_owed_keeps_both_in_order(self):
        # A reboot of the resized guest before the source answers: its
        # output goes behind a reserved slot, the import fills the slot.
        after = self._pull_owed()
        newest = self._reboot_while_owed()
        self.hosts.servers['src'].start()
        self.assertEqual(self.before + after + newest,
                         self.dst.read(self.uuid))
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before + after + newest,
                         self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001', 'console.history.000002'],
                         self.history(self.dst))
        self.confirm(self.src)
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))

    def test_confirm_before_the_pull_keeps_the_stash(self):
        after = self._pull_owed()
        self.hosts.servers['src'].start()
        self.confirm(self.src)
        held = self.src.steps.held_stashes(self.uuid)
        self.assertEqual([True], [s.confirmed for s in held])
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual([], self.src.steps.held_stashes(self.uuid))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.dst))

    def test_revert_while_the_pull_is_owed(self):
        self._pull_owed()
        self.hosts.servers['src'].start()
        again = self.revert(self.src, self.dst)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertEqual(self.before + again, self.src.read(self.uuid))
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertFalse(os.path.exists(self.dst.instance_dir(self.uuid)))

    def test_stash_granted_to_the_destination_only(self):
        self.migrate(self.src, self.dst)
        self.finish(self.src, self.dst)
        stash = self.src.steps.held_stashes(self.uuid)[0]
        self.assertEqual('dst', stash.destination)
        # Another host finds no held stash of its own to install locally.
        third = migration_cases.Host(self.hosts, 'third')
        third.conf.set_override('rpc_timeout', 2, group='consolelog')
        third.steps.cold_migration_finished(self.uuid, 'src')
        self.assertEqual(1, len(self.src.steps.held_stashes(self.uuid)))
        self.assertIsNone(self.src.steps.held_stashes(
            self.uuid)[0].installed_by)

    def test_nothing_to_keep(self):
        other = str(uuid.uuid4())
        self.assertIsNone(self.src.steps.cold_migration_started(other, 'dst'))
        self.assertEqual(0, self.src.steps.cold_migration_reverted(other))
        self.assertIsNone(self.src.steps.cold_migration_confirmed(other))
