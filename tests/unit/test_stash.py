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

"""Stashes: create, load, list, restore, install as history, expire."""

import contextlib
import errno
import json
import logging
import os
import shutil
from unittest import mock

import fixtures

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import stash as cl_stash
from nova_consolelog.stash import install as cl_install
from nova_consolelog.stash import moves as cl_moves
from nova_consolelog.stash import store as cl_store

from tests import fixtures as test_fixtures

UUID = test_fixtures.UUID
OTHER = '0c6b5a2e-8e7b-4f1e-9b8f-3f0e2d7c1a90'
CHAIN = {'console.history.000001': b'history\n',
         'console.log.2': b'two\n', 'console.log.0': b'zero\n',
         'console.log': b'live\n', cl_chain.BASE_OFFSET_NAME: b'100\n'}


class StashTestCase(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='nova_consolelog', level=logging.INFO))
        self.stash_root = cl_conf.stash_path(self.conf)
        for name, data in CHAIN.items():
            self.write(name, data)

    def create(self, **kwargs):
        return cl_stash.Stash.create(UUID, self.chain, conf=self.conf,
                                     **kwargs)


class TestCreate(StashTestCase):

    def test_moves_every_file(self):
        inodes = {n: os.stat(os.path.join(self.dir, n)).st_ino
                  for n in CHAIN}
        stash = self.create(live_names=('console.log',))
        self.assertEqual([], os.listdir(self.dir))
        self.assertEqual(
            os.path.join(self.stash_root, UUID, stash.stash_id), stash.path)
        on_disk = sorted(os.listdir(stash.path))
        self.assertEqual(sorted(list(CHAIN) + ['manifest.json']), on_disk)
        for name, data in CHAIN.items():
            path = os.path.join(stash.path, name)
            with open(path, 'rb') as f:
                self.assertEqual(data, f.read())
            # Moved, not copied.
            self.assertEqual(inodes[name], os.stat(path).st_ino)
        with open(os.path.join(stash.path, 'manifest.json')) as f:
            manifest = json.load(f)
        self.assertEqual(UUID, manifest['instance_uuid'])
        self.assertEqual(stash.stash_id, manifest['stash_id'])
        self.assertEqual(self.dir, manifest['source'])
        self.assertEqual(100, manifest['base_offset'])
        self.assertEqual(['console.log'], manifest['live_names'])
        self.assertEqual('stashed', manifest['state'])
        self.assertEqual(
            [('console.history.000001', 'history', 8),
             ('console.log.2', 'backup', 4), ('console.log.0', 'backup', 5),
             ('console.log', 'log', 5)],
            [(f['name'], f['kind'], f['size']) for f in manifest['files']])

    def test_stash_chain_reads_like_the_original(self):
        expected = self.chain.read_tail()
        described = self.chain.describe('h', UUID, checksums=True)
        stash = self.create()
        self.assertEqual(expected, stash.chain.read_tail())
        self.assertEqual(100, stash.chain.base_offset())
        again = stash.chain.describe('h', UUID, checksums=True,
                                     stash_id=stash.stash_id)
        self.assertEqual([f.name for f in described.files],
                         [f.name for f in again.files])
        self.assertEqual(described.files[0].sha256, again.files[0].sha256)
        self.assertEqual((b'zero\n', True),
                         stash.chain.read_chunk('console.log.0', 0, 100))

    def test_writer_keeps_writing_into_the_moved_file(self):
        with open(os.path.join(self.dir, 'console.log'), 'ab') as qemu:
            stash = self.create(live_names=('console.log',))
            qemu.write(b'after\n')
        self.assertTrue(stash.chain.read_tail().endswith(b'live\nafter\n'))

    def test_empty_chain(self):
        for name in CHAIN:
            os.unlink(os.path.join(self.dir, name))
        stash = self.create(stash_id='empty')
        self.assertEqual([], stash.chain.scan())
        self.assertEqual([], stash.manifest['files'])
        self.assertEqual('empty', cl_stash.Stash.load(
            UUID, 'empty', conf=self.conf).stash_id)

    def test_bad_input_changes_nothing(self):
        before = self.state(self.root)
        for kwargs in ({'stash_id': '../x'}, {'stash_id': 'a' * 65},
                       {'stash_id': ''}, {'live_names': (1,)}):
            self.assertRaises(exception.InvalidInput, self.create, **kwargs)
        self.assertRaises(exception.InvalidInput, cl_stash.Stash.create,
                          '../' + UUID, self.chain, conf=self.conf)
        self.assertEqual(before, self.state(self.root))

    def test_existing_stash_id(self):
        stash = self.create(stash_id='s1')
        self.write('console.log', b'new')
        before = self.state(self.root)
        self.assertRaises(exception.InvalidInput, self.create,
                          stash_id='s1')
        self.assertEqual(before, self.state(self.root))
        self.assertEqual(b'live\n', stash.chain.read_chunk(
            'console.log', 0, 100)[0])

    def test_missing_instance_dir(self):
        chain = cl_chain.ConsoleLogChain(os.path.join(self.root, 'gone'),
                                         conf=self.conf)
        self.assertRaises(exception.InstanceDirNotFound,
                          cl_stash.Stash.create, UUID, chain,
                          conf=self.conf)

    def test_other_filesystem(self):
        real_stat = os.stat

        class Stat:
            def __init__(self, st, dev):
                self.st_dev = dev
                self.st_mode = st.st_mode

        def stat(path, *args, **kwargs):
            st = real_stat(path, *args, **kwargs)
            if path.startswith(self.stash_root):
                return Stat(st, st.st_dev + 1)
            return st

        before = self.state()
        with mock.patch.object(os, 'stat', stat):
            e = self.assertRaises(exception.InvalidInput, self.create)
        self.assertIn('same filesystem', str(e))
        self.assertEqual(before, self.state())
        self.assertEqual([], os.listdir(os.path.join(self.stash_root,
                                                     UUID)))

    def test_failure_midway_moves_back(self):
        real_rename = os.rename
        calls = []

        def rename(src, dst):
            calls.append(src)
            if len(calls) == 3:
                raise OSError(errno.EIO, 'I/O error')
            return real_rename(src, dst)

        before = self.state()
        with mock.patch.object(os, 'rename', rename):
            self.assertRaises(exception.StashFailed, self.create)
        self.assertEqual(before, self.state())
        self.assertEqual([], os.listdir(os.path.join(self.stash_root,
                                                     UUID)))

    def test_exdev_on_rename(self):
        def rename(src, dst):
            raise OSError(errno.EXDEV, 'Invalid cross-device link')

        before = self.state()
        with mock.patch.object(os, 'rename', rename):
            self.assertRaises(exception.InvalidInput, self.create)
        self.assertEqual(before, self.state())


def faulty_os(faulty):
    """``faulty`` as the ``os`` of the stash modules and of the chain."""
    stack = contextlib.ExitStack()
    for module in (cl_moves, cl_store, cl_install):
        stack.enter_context(mock.patch.object(module, 'os', faulty))
    stack.enter_context(test_fixtures.chain_os(faulty))
    return stack


class TestLoadList(StashTestCase):

    def test_load(self):
        stash = self.create(stash_id='s1', live_names=('console.log',))
        loaded = cl_stash.Stash.load(UUID, 's1', conf=self.conf)
        self.assertEqual(stash.manifest, loaded.manifest)
        self.assertEqual(('console.log',), loaded.live_names)
        self.assertEqual('stashed', loaded.state)
        self.assertLess(loaded.age(), 60)

    def test_unknown_and_bad(self):
        self.create(stash_id='s1')
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          UUID, 's2', conf=self.conf)
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          OTHER, 's1', conf=self.conf)
        for bad in ('..', '../s1', 's1/', ''):
            self.assertRaises(exception.InvalidInput, cl_stash.Stash.load,
                              UUID, bad, conf=self.conf)

    def test_symlinked_stash_refused(self):
        stash = self.create(stash_id='s1')
        os.symlink(stash.path, os.path.join(self.stash_root, UUID, 's2'))
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          UUID, 's2', conf=self.conf)
        self.assertEqual(['s1'], [s.stash_id for s in cl_stash.Stash.list(
            UUID, conf=self.conf)])

    def test_list(self):
        self.assertEqual([], cl_stash.Stash.list(conf=self.conf))
        first = self.create(stash_id='b')
        self.write('console.log', b'again\n')
        second = self.create(stash_id='a')
        other_dir = os.path.join(self.root, OTHER)
        os.mkdir(other_dir)
        self.write('console.log', b'other\n', directory=other_dir)
        cl_stash.Stash.create(OTHER, cl_chain.ConsoleLogChain(
            other_dir, conf=self.conf), stash_id='c', conf=self.conf)
        os.mkdir(os.path.join(self.stash_root, 'not-a-uuid'))
        self.assertEqual([first.stash_id, second.stash_id],
                         [s.stash_id for s in cl_stash.Stash.list(
                             UUID, conf=self.conf)])
        self.assertEqual(['b', 'a', 'c'],
                         [s.stash_id for s in cl_stash.Stash.list(
                             conf=self.conf)])

    def test_stash_released_while_listed_is_skipped(self):
        # Another thread releases a stash between the listing's directory
        # check and its manifest read (a pull's release beside another
        # pull's expiry pass): gone, not a failure of the listing.
        self.create(stash_id='s1')
        doomed = {'s2': self.create(stash_id='s2')}
        read = cl_store.cl_manifest.read

        def released_meanwhile(path, instance_uuid, stash_id):
            if stash_id in doomed:
                doomed.pop(stash_id).release()
            return read(path, instance_uuid, stash_id)

        with mock.patch.object(cl_store.cl_manifest, 'read',
                               released_meanwhile):
            self.assertEqual(['s1'], [s.stash_id for s in
                                      cl_stash.Stash.list(conf=self.conf)])
            doomed['s3'] = self.create(stash_id='s3')
            self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                              UUID, 's3', conf=self.conf)
        self.assertEqual({}, doomed)

    def test_instance_dir_gone_while_listed_is_skipped(self):
        # The last stash of an instance released (its directory removed)
        # right after the listing saw the directory.
        stash = self.create(stash_id='s1')
        is_real_dir = cl_store.fileutils.is_real_dir

        def released_after_check(path):
            real = is_real_dir(path)
            if path == os.path.dirname(stash.path) and real:
                stash.release()
            return real

        with mock.patch.object(cl_store.fileutils, 'is_real_dir',
                               released_after_check):
            self.assertEqual([], cl_stash.Stash.list(conf=self.conf))
        self.assertFalse(os.path.exists(os.path.dirname(stash.path)))

    def test_incomplete_stash_is_not_forgotten(self):
        stash = self.create(stash_id='s1')
        os.unlink(os.path.join(stash.path, 'manifest.json'))
        loaded = cl_stash.Stash.load(UUID, 's1', conf=self.conf)
        self.assertEqual('incomplete', loaded.state)
        self.assertEqual(5, len(loaded.chain.scan()) + 1)
        self.assertEqual(['s1'], [s.stash_id for s in cl_stash.Stash.list(
            conf=self.conf)])


class TestRestore(StashTestCase):

    def test_restore_moves_back(self):
        before = self.state()
        stash = self.create()
        restored = stash.restore(self.dir)
        self.assertEqual(sorted(n for n in CHAIN
                                if n != cl_chain.BASE_OFFSET_NAME),
                         sorted(restored))
        self.assertEqual(before, self.state())
        self.assertFalse(os.path.exists(stash.path))
        self.assertEqual([], cl_stash.Stash.list(conf=self.conf))

    def test_restore_when_a_new_log_exists(self):
        stash = self.create()
        self.write('console.log', b'new qemu\n')
        restored = stash.restore(self.dir)
        self.assertEqual(['console.history.000001'], restored)
        # Nothing overwritten, nothing lost: the stash is history now.
        self.assertEqual(b'history\ntwo\nzero\nlive\nnew qemu\n',
                         self.chain.read(0, 10 ** 6).data)
        self.assertEqual(100, self.chain.base_offset())
        self.assertFalse(os.path.exists(stash.path))

    def test_restore_into_missing_dir(self):
        stash = self.create()
        self.assertRaises(exception.InstanceDirNotFound, stash.restore,
                          os.path.join(self.root, 'gone'))
        self.assertTrue(os.path.isdir(stash.path))


class TestInstallAsHistory(StashTestCase):

    def test_install(self):
        # Every file, console.log.2 beyond the gap at .1 included.
        expected = b'history\ntwo\nzero\nlive\n'
        stash = self.create()
        name = stash.install_as_history(self.chain)
        self.assertEqual('console.history.000001', name)
        self.assertEqual(expected, self.chain.read_tail())
        self.assertEqual(100, self.chain.base_offset())
        self.assertFalse(os.path.exists(stash.path))

    def test_includes_files_beyond_a_gap(self):
        # console.log.2 is outside nova's view (no .1) but still migrated.
        stash = self.create()
        stash.install_as_history(self.chain)
        self.assertIn(b'two\n', self.chain.read_tail())

    def test_bounded_by_history_max_bytes(self):
        self.conf.set_override('history_max_bytes', 6, 'consolelog')
        stash = self.create()
        stash.install_as_history(self.chain)
        # Cut at the start of the block holding the limit (every kept
        # block is checked on disk whole): the last file is kept whole.
        self.assertEqual(b'zero\nlive\n', self.chain.read_tail())
        self.assertIn('without its oldest 12 byte(s)', self.logger.output)
        self.assertEqual(112, self.chain.base_offset())

    def test_failed_install_keeps_the_stash(self):
        stash = self.create()
        before = self.state(stash.path)
        with mock.patch.object(cl_chain.os, 'rename',
                               side_effect=OSError(errno.EIO, 'I/O')):
            self.assertRaises(exception.InstallFailed,
                              stash.install_as_history, self.chain)
        self.assertEqual(before, self.state(stash.path))
        self.assertEqual([], self.chain.scan())


class TestExpire(StashTestCase):

    def test_expire_old_only(self):
        old = self.create(stash_id='old')
        self.write('console.log', b'newer\n')
        new = self.create(stash_id='new')
        now = old.created + 1000
        with open(os.path.join(new.path, 'manifest.json')) as f:
            manifest = json.load(f)
        manifest['created'] = now - 10
        cl_chain.write_atomic(new.path, 'manifest.json',
                              json.dumps(manifest).encode())
        expired = cl_stash.expire(500, conf=self.conf, now=now)
        self.assertEqual([(UUID, 'old', 22)], expired)
        self.assertFalse(os.path.exists(old.path))
        self.assertTrue(os.path.exists(new.path))
        self.assertIn('Deleted console-log stash old of instance %s: 22 '
                      'byte(s)' % UUID, self.logger.output)

    def test_bad_max_age(self):
        self.create()
        for bad in (-1, '10', None):
            self.assertRaises(exception.InvalidInput, cl_stash.expire, bad,
                              conf=self.conf)
        self.assertEqual(1, len(cl_stash.Stash.list(conf=self.conf)))

    def test_no_stash_root(self):
        self.assertEqual([], cl_stash.expire(0, conf=self.conf))


class TestFaultAtEveryStep(StashTestCase):
    """A failing os call at each step: all moved or nothing moved."""

    def _fresh_chain(self):
        for directory in (self.dir, self.stash_root):
            if os.path.isdir(directory):
                shutil.rmtree(directory)
        os.mkdir(self.dir)
        for name, data in CHAIN.items():
            self.write(name, data)

    def test_create(self):
        self._fresh_chain()
        original = self.state()
        step = 0
        outcomes = set()
        while True:
            step += 1
            self._fresh_chain()
            faulty = test_fixtures.FaultyOS(step)
            with faulty_os(faulty):
                try:
                    stash = self.create(stash_id='s')
                except exception.ConsoleLogError:
                    stash = None
            where = 'step %d (%s)' % (step, faulty.failed)
            if stash is None:
                outcomes.add('undone')
                self.assertEqual(original, self.state(), where)
                self.assertEqual([], cl_stash.Stash.list(conf=self.conf),
                                 where)
                continue
            self.assertEqual({}, self.state(), where)
            loaded = cl_stash.Stash.load(UUID, 's', conf=self.conf)
            self.assertEqual('stashed', loaded.state, where)
            self.assertEqual(original, {
                n: v for n, v in self.state(loaded.path).items()
                if n != 'manifest.json'}, where)
            if faulty.failed is None:
                break
        self.assertIn('undone', outcomes)
        self.assertGreater(step, 8)

    def test_restore(self):
        self._fresh_chain()
        original = self.state()
        step = 0
        while True:
            step += 1
            self._fresh_chain()
            stash = self.create(stash_id='s')
            in_stash = self.state(stash.path)
            faulty = test_fixtures.FaultyOS(step)
            with faulty_os(faulty):
                try:
                    stash.restore(self.dir)
                    restored = True
                except exception.ConsoleLogError:
                    restored = False
            where = 'step %d (%s)' % (step, faulty.failed)
            if restored:
                self.assertEqual(original, self.state(), where)
                self.assertEqual([], cl_stash.Stash.list(conf=self.conf),
                                 where)
                if faulty.failed is None:
                    break
            else:
                self.assertEqual({}, self.state(), where)
                self.assertEqual(in_stash, self.state(stash.path), where)
        self.assertGreater(step, 5)
