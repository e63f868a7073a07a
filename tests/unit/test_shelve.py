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

"""Shelve offload and unshelve, two hosts on fake://, in nova's order.

The test stands in for nova: the offload's destroy deletes the instance
directory, the unshelve's spawn starts a QEMU (virtlogd truncates) on the
scheduled host, which may be the shelved host or another. Mocks only
inject faults (a failing destroy, a release that does not arrive).
"""

import os
from unittest import mock

from nova_consolelog.handover.record import State
from nova_consolelog import stash as cl_stash

from tests.unit import migration_cases

lines = migration_cases.lines


class ShelveTestBase(migration_cases.MigrationTestBase):

    def offload(self, host=None):
        """nova's shelve offload on ``host``: stash, then destroy."""
        host = host or self.src
        stash_id = host.steps.shelve_offloading(self.uuid)
        self.assertIsNotNone(stash_id)
        host.nova_cleanup(self.uuid)
        return stash_id

    def spawn(self, host, shelved_host='src'):
        """nova's unshelve spawn on ``host``, up to the guest's output."""
        host.steps.unshelving(self.uuid, shelved_host)
        host.steps.before_qemu_start(self.uuid)
        host.qemu_start(self.uuid)
        after = lines(0, 40, 'unshelved')
        host.append(self.uuid, 'console.log', after)
        return after

    def history(self, host):
        return sorted(n for n in os.listdir(host.instance_dir(self.uuid))
                      if n.startswith('console.history.0'))

    def stash_root(self, host):
        return host.steps.stash_root


class TestShelveToAnotherHost(ShelveTestBase):

    def test_pulled_from_the_shelved_host(self):
        self.offload()
        self.assertFalse(os.path.exists(self.src.instance_dir(self.uuid)))
        stashes = self.src.steps.stashes(self.uuid)
        self.assertEqual([None], [s.destination for s in stashes])
        # The guest is off: no live names, every file has its hash list.
        self.assertEqual((), stashes[0].live_names)
        self.assertTrue(stashes[0].manifest['files'])
        self.assertTrue(all('blocks' in e
                            for e in stashes[0].manifest['files']))
        after = self.spawn(self.dst)
        # During the spawn the record names the shelved host: reads merge.
        record = self.dst.steps.record(self.uuid).load()
        self.assertEqual(('destination', 'src', 'migrating'),
                         (record['role'], record['peer'], record['state']))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertEqual('src', self.dst.steps.unshelved(self.uuid, 'src'))
        self.assertEqual(State.PULLING,
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.dst.steps.unshelve_pull(self.uuid, 'src'))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertEqual(['console.history.000001'], self.history(self.dst))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual([], self.dst.steps.retry_pending())
        # The next restart keeps every part, in order.
        self.dst.steps.before_qemu_start(self.uuid)
        self.dst.qemu_start(self.uuid)
        self.dst.append(self.uuid, 'console.log', b'again\r\n')
        self.assertEqual(self.before + after + b'again\r\n',
                         self.dst.read(self.uuid))

    def test_shelved_host_unreachable_is_collected_later(self):
        self.offload()
        self.hosts.servers['src'].stop()
        self.dst.conf.set_override('rpc_timeout', 1, group='consolelog')
        after = self.spawn(self.dst)
        self.assertEqual('src', self.dst.steps.unshelved(self.uuid, 'src'))
        # The pull fails, nothing raises, the import stays owed.
        self.assertIsNone(self.dst.steps.unshelve_pull(self.uuid, 'src'))
        self.assertEqual(State.PULLING,
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertEqual([], self.history(self.dst))
        self.assertEqual([], self.dst.steps.retry_pending())
        # The shelved host comes back: the periodic task collects it.
        self.hosts.start('src', max_console_bytes=1 << 20)
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_release_lost_is_asked_again_without_a_second_copy(self):
        self.offload()
        after = self.spawn(self.dst)
        self.dst.steps.unshelved(self.uuid, 'src')
        with mock.patch.object(self.dst.rpcapi, 'release',
                               side_effect=RuntimeError('lost')):
            self.assertTrue(self.dst.steps.unshelve_pull(self.uuid, 'src'))
        self.assertEqual(State.INSTALLED,
                         self.dst.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertEqual([self.uuid], self.dst.steps.retry_pending())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.dst))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))

    def unshelved_with_pull_owed(self):
        self.offload()
        self.hosts.servers['src'].stop()
        self.dst.conf.set_override('rpc_timeout', 1, group='consolelog')
        after = self.spawn(self.dst)
        self.dst.steps.unshelved(self.uuid, 'src')
        self.dst.steps.unshelve_pull(self.uuid, 'src')
        self.assertEqual(State.PULLING,
                         self.dst.steps.record(self.uuid).load()['state'])
        return after

    def test_offload_again_finishes_the_owed_pull_first(self):
        after = self.unshelved_with_pull_owed()
        self.hosts.start('src', max_console_bytes=1 << 20)
        # Shelve offload on dst while the pull from src is still owed.
        stash_id = self.offload(self.dst)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(os.path.exists(self.dst.instance_dir(self.uuid)))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual([stash_id], [s.stash_id for s in
                                      self.dst.steps.stashes(self.uuid)])
        # Unshelved on src now: every part, once, in order.
        again = self.spawn(self.src, shelved_host='dst')
        self.assertEqual('dst', self.src.steps.unshelved(self.uuid, 'dst'))
        self.assertTrue(self.src.steps.unshelve_pull(self.uuid, 'dst'))
        self.assertEqual(self.before + after + again,
                         self.src.read(self.uuid))
        # Nothing left over on dst, no directory brought back.
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertFalse(os.path.exists(self.dst.instance_dir(self.uuid)))
        self.assertFalse(self.dst.steps.has_stash(self.uuid))

    def test_offload_again_with_the_first_host_still_away(self):
        after = self.unshelved_with_pull_owed()
        with self.assertLogs('nova_consolelog.handover.shelve', 'WARNING'):
            self.offload(self.dst)
        # The owed import is given up, never retried into a directory
        # nova deleted; what dst had is stashed for the next unshelve.
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertEqual([], self.dst.steps.retry_pending())
        self.assertFalse(os.path.exists(self.dst.instance_dir(self.uuid)))
        self.assertEqual([after], [s.chain.read_tail(1 << 20) for s in
                                   self.dst.steps.stashes(self.uuid)])

    def test_failed_spawn_leaves_the_stash_for_the_next_unshelve(self):
        self.offload()
        self.dst.steps.unshelving(self.uuid, 'src')
        self.dst.steps.shelve_spawn_failed(self.uuid)
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.dst.nova_cleanup(self.uuid)
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        # The next unshelve goes back to the shelved host.
        after = self.spawn(self.src)
        self.assertTrue(self.src.steps.unshelved(self.uuid, 'src'))
        self.assertEqual(self.before + after, self.src.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_stash_made_before_a_crash_without_manifest_is_pulled(self):
        # A crash between the stash's renames and its manifest: the
        # files are listed as an incomplete stash and still handed over.
        stash_id = self.offload()
        stash_dir = os.path.join(self.stash_root(self.src), self.uuid,
                                 stash_id)
        os.unlink(os.path.join(stash_dir, cl_stash.MANIFEST))
        after = self.spawn(self.dst)
        self.dst.steps.unshelved(self.uuid, 'src')
        self.assertTrue(self.dst.steps.unshelve_pull(self.uuid, 'src'))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_nothing_to_keep(self):
        self.src.nova_cleanup(self.uuid)
        self.assertIsNone(self.src.steps.shelve_offloading(self.uuid))
        self.assertIsNone(self.src.steps.unshelved(self.uuid, None))
        self.assertFalse(self.dst.steps.unshelving(self.uuid, None))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())


class TestShelveOnTheSameHost(ShelveTestBase):

    def test_installed_locally(self):
        self.offload()
        self.assertFalse(self.src.steps.unshelving(self.uuid, 'src'))
        self.assertIsNone(self.src.steps.record(self.uuid).load())
        after = self.spawn(self.src)
        self.assertEqual(self.before + after, self.src.read(self.uuid))
        self.assertTrue(self.src.steps.unshelved(self.uuid, 'src'))
        self.assertIsNone(self.src.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.src))
        self.assertEqual(self.before + after, self.src.read(self.uuid))

    def test_crash_between_install_and_release(self):
        self.offload()
        after = self.spawn(self.src)
        real = cl_stash.Stash.release
        with mock.patch.object(cl_stash.Stash, 'release',
                               side_effect=OSError('crash')):
            self.assertIsNone(self.src.steps.unshelved(self.uuid, 'src'))
        # The record says an import is owed; reads do not repeat it.
        self.assertEqual(State.PULLING,
                         self.src.steps.record(self.uuid).load()['state'])
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        with mock.patch.object(cl_stash.Stash, 'release', real):
            self.assertEqual([self.uuid], self.src.steps.retry_pending())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(['console.history.000001'], self.history(self.src))
        self.assertEqual(self.before + after, self.src.read(self.uuid))

    def test_crash_before_the_destroy(self):
        # Stashed, then nova-compute died before its destroy: the stash
        # is there for the unshelve (here, on the same host).
        self.src.steps.shelve_offloading(self.uuid)
        self.assertEqual([], os.listdir(self.src.instance_dir(self.uuid)))
        after = self.spawn(self.src)
        self.src.steps.unshelved(self.uuid, 'src')
        self.assertEqual(self.before + after, self.src.read(self.uuid))

    def test_failed_destroy_moves_the_stash_back(self):
        stash_id = self.src.steps.shelve_offloading(self.uuid)
        self.assertTrue(self.src.steps.shelve_offload_failed(self.uuid,
                                                             stash_id))
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before, self.src.read(self.uuid))
        # The unshelve of a shelved instance is a power on here.
        self.src.steps.before_qemu_start(self.uuid)
        self.src.qemu_start(self.uuid)
        self.assertEqual(self.before, self.src.read(self.uuid))

    def test_failed_destroy_after_the_directory_went_keeps_the_stash(self):
        stash_id = self.offload()
        self.assertFalse(self.src.steps.shelve_offload_failed(self.uuid,
                                                              stash_id))
        self.assertTrue(self.src.steps.has_stash(self.uuid))

    def test_hostile_stash_ids_change_nothing(self):
        stash_id = self.src.steps.shelve_offloading(self.uuid)
        listing = sorted(os.listdir(self.src.instance_dir(self.uuid)))
        for bad in ('../../etc', '/', '', None, 7, stash_id + '/..',
                    '..', 'x' * 4096):
            self.assertFalse(self.src.steps.shelve_offload_failed(
                self.uuid, bad))
        self.assertEqual(listing,
                         sorted(os.listdir(self.src.instance_dir(self.uuid))))
        self.assertEqual([stash_id], [s.stash_id for s in
                                      self.src.steps.stashes(self.uuid)])
        # A malformed instance uuid is refused by the guard.
        with self.assertLogs('nova_consolelog.handover.guard', 'WARNING'):
            self.assertIsNone(self.src.steps.shelve_offloading('../x'))

    def test_planted_symlink_stash_is_not_installed(self):
        self.offload()
        elsewhere = os.path.join(self.hosts.root, 'elsewhere')
        os.makedirs(elsewhere)
        with open(os.path.join(elsewhere, 'console.log'), 'wb') as f:
            f.write(b'planted\r\n')
        os.symlink(elsewhere, os.path.join(
            self.stash_root(self.src), self.uuid, cl_stash.new_stash_id()))
        after = self.spawn(self.src)
        self.assertTrue(self.src.steps.unshelved(self.uuid, 'src'))
        self.assertEqual(self.before + after, self.src.read(self.uuid))
        self.assertEqual(['console.log'], os.listdir(elsewhere))

    def test_expired_stash_is_gone_and_the_unshelve_goes_on(self):
        self.offload()
        self.src.conf.set_override('stash_expiry', 0, group='consolelog')
        for stash in self.src.steps.stashes(self.uuid):
            stash._rewrite_manifest(created=0)
        self.src.steps.retry_pending()
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        after = self.spawn(self.src)
        self.assertIsNone(self.src.steps.unshelved(self.uuid, 'src'))
        self.assertEqual(after, self.src.read(self.uuid))


class TestDeletedWhileShelved(ShelveTestBase):

    def test_stash_of_a_deleted_instance_goes_early(self):
        self.offload()
        asked = []

        def deleted(instance_uuid):
            asked.append(instance_uuid)
            return True

        released = self.src.steps.forget_deleted(deleted)
        self.assertEqual([self.uuid], asked)
        self.assertEqual([self.uuid], [r[0] for r in released])
        self.assertFalse(self.src.steps.has_stash(self.uuid))

    def test_kept_while_the_instance_exists_or_nobody_can_tell(self):
        self.offload()
        self.assertEqual([], self.src.steps.forget_deleted(lambda u: False))

        def unknown(instance_uuid):
            raise RuntimeError('database away')

        self.assertEqual([], self.src.steps.forget_deleted(unknown))
        self.assertTrue(self.src.steps.has_stash(self.uuid))

    def test_stash_for_one_destination_is_not_asked_about(self):
        # A live migration's stash is not waiting for an unshelve.
        self.src.steps.live_migration_started(self.uuid, 'dst', False)
        self.src.steps.post_live_migration_at_source(self.uuid, 'dst',
                                                     False)
        self.assertTrue(self.src.steps.has_stash(self.uuid))
        self.assertEqual([], self.src.steps.forget_deleted(
            lambda u: self.fail('asked about %s' % u)))
        self.assertTrue(self.src.steps.has_stash(self.uuid))


class TestShelveSharedStashRoot(ShelveTestBase):

    shared = True

    def test_another_host_installs_from_the_shared_root(self):
        self.offload()
        self.assertFalse(self.dst.steps.unshelving(self.uuid, 'src'))
        after = self.spawn(self.dst)
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
        self.assertTrue(self.dst.steps.unshelved(self.uuid, 'src'))
        self.assertIsNone(self.dst.steps.record(self.uuid).load())
        self.assertFalse(self.src.steps.has_stash(self.uuid))
        self.assertEqual(self.before + after, self.dst.read(self.uuid))
