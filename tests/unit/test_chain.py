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

"""Scan, merged read, paging, describe and chunk reads of a chain."""

import errno
import hashlib
import os
from unittest import mock

from oslotest import base

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception

from tests import fixtures as test_fixtures

UUID = test_fixtures.UUID


class TestScan(test_fixtures.ChainTestCase):

    def test_order_history_backups_log(self):
        for name in ('console.log', 'console.log.0', 'console.log.2',
                     'console.log.10', 'console.history.000002',
                     'console.history.000010', 'console.history.000001'):
            self.write(name, name.encode())
        names = [f.name for f in self.chain.scan()]
        self.assertEqual(
            ['console.history.000001', 'console.history.000002',
             'console.history.000010', 'console.log.10', 'console.log.2',
             'console.log.0', 'console.log'], names)

    def test_kinds_indexes_sizes(self):
        self.write('console.history.000003', b'abc')
        self.write('console.log.1', b'12345')
        self.write('console.log', b'')
        files = self.chain.scan()
        self.assertEqual([('history', 3, 3), ('backup', 1, 5),
                          ('log', None, 0)],
                         [(f.kind, f.index, f.size) for f in files])
        self.assertIsInstance(files[0].mtime, float)

    def test_other_names_ignored(self):
        for name in ('console.log.01', 'console.log.x', 'console.log.-1',
                     'console.history.1', 'console.history.base',
                     'console.history.0000001', '.console.history.partial-a',
                     'disk', 'libvirt.xml', 'console.logx'):
            self.write(name, b'x')
        self.assertEqual([], self.chain.scan())

    def test_custom_log_name(self):
        chain = cl_chain.ConsoleLogChain(self.dir, log_name='serial.txt',
                                         conf=self.conf)
        self.write('serial.txt', b'a', chain=chain)
        self.write('serial.txt.0', b'b', chain=chain)
        self.write('console.log', b'c', chain=chain)
        self.assertEqual(['serial.txt.0', 'serial.txt'],
                         [f.name for f in chain.scan()])
        self.assertEqual(b'ba', chain.read_tail())

    def test_two_virtlogds_order_by_last_write(self):
        # A shared instance path mid-migration: the source's virtlogd
        # rolled over after the chain was moved aside, renaming the
        # destination's new console.log to .0 and writing its last lines
        # to a new console.log; then the destination's virtlogd rolled
        # over too. Numbers no longer follow time; last writes do.
        self.write('console.history.000001', b'H ')
        self.write('console.log.1', b'dst-1 ')
        self.write('console.log.0', b'src-last ')
        self.write('console.log', b'dst-2')
        for name, stamp in (('console.log.1', 30), ('console.log.0', 10),
                            ('console.log', 40)):
            os.utime(os.path.join(self.dir, name), (stamp, stamp))
        self.assertEqual(['console.history.000001', 'console.log.0',
                          'console.log.1', 'console.log'],
                         [f.name for f in self.chain.scan()])
        self.assertEqual(b'H src-last dst-1 dst-2', self.chain.read_tail())
        self.assertEqual(b'H src-last dst-1 dst-2',
                         self.chain.read(0).data)

    def test_equal_mtimes_keep_virtlogd_numbering(self):
        for name in ('console.log', 'console.log.0', 'console.log.1'):
            self.write(name, name.encode() + b' ')
            os.utime(os.path.join(self.dir, name), (5, 5))
        self.assertEqual(b'console.log.1 console.log.0 console.log ',
                         self.chain.read_tail())

    def test_empty_directory(self):
        self.assertEqual([], self.chain.scan())
        self.assertEqual(b'', self.chain.read_tail())


class TestForInstance(test_fixtures.ChainTestCase):

    def test_path(self):
        chain = cl_chain.ConsoleLogChain.for_instance(UUID, conf=self.conf)
        self.assertEqual(self.dir, chain.directory)
        self.assertEqual(UUID, chain.instance)

    def test_canonical_form_only(self):
        chain = cl_chain.ConsoleLogChain.for_instance(
            '{%s}' % UUID.upper(), conf=self.conf)
        self.assertEqual(self.dir, chain.directory)

    def test_malformed(self):
        before = self.state(self.root)
        for bad in ('../etc', '', 'abc', UUID + '/..', '../' + UUID, None,
                    42, UUID[:-1], UUID + 'x'):
            self.assertRaises(exception.InvalidInput,
                              cl_chain.ConsoleLogChain.for_instance, bad,
                              conf=self.conf)
        self.assertEqual(before, self.state(self.root))


class TestReadTail(test_fixtures.ChainTestCase):

    def test_merge_order(self):
        self.write('console.history.000001', b'h1\n')
        self.write('console.history.000002', b'h2\n')
        self.write('console.log.1', b'b1\n')
        self.write('console.log.0', b'b0\n')
        self.write('console.log', b'log\n')
        self.assertEqual(b'h1\nh2\nb1\nb0\nlog\n', self.chain.read_tail())
        self.assertEqual(b'b0\nlog\n', self.chain.read_tail(7))
        self.assertEqual(b'\nb0\nlog\n', self.chain.read_tail(8))
        self.assertEqual(b'', self.chain.read_tail(0))

    def test_default_max_bytes_from_conf(self):
        self.conf.set_override('max_console_bytes', 5, 'consolelog')
        self.write('console.log', b'0123456789')
        self.assertEqual(b'56789', self.chain.read_tail())

    def test_length(self):
        self.write('console.log.0', b'a\nb\n')
        self.write('console.log', b'c\nd')
        self.assertEqual(b'c\nd', self.chain.read_tail(length=2))
        self.assertEqual(b'b\nc\nd', self.chain.read_tail(length=3))
        self.assertEqual(b'', self.chain.read_tail(length=0))
        self.assertEqual(b'a\nb\nc\nd', self.chain.read_tail(length=99))

    def test_history_with_gap(self):
        # Decided: history + the backups newer than the first gap + log;
        # console.log.2 (beyond the gap at .1) is not in the stream.
        self.write('console.history.000001', b'H')
        self.write('console.log.2', b'OLD')
        self.write('console.log.0', b'B0')
        self.write('console.log', b'L')
        self.assertEqual(b'HB0L', self.chain.read_tail())
        self.assertEqual(b'HB0L', self.chain.read(0).data)
        # ...but it is listed, described and so migrated.
        self.assertIn('console.log.2', [f.name for f in self.chain.scan()])

    def test_history_without_log(self):
        self.write('console.history.000001', b'H')
        self.write('console.log.0', b'B0')
        self.assertEqual(b'H', self.chain.read_tail())

    def test_reads_only_the_tail(self):
        size = 64 * 1024 * 1024
        for name in ('console.log.1', 'console.log.0', 'console.log'):
            with open(os.path.join(self.dir, name), 'wb') as f:
                f.truncate(size - 4)
                f.seek(size - 4)
                f.write(b'END\n')
        reads = []
        real_pread = os.pread

        def counting_pread(fd, n, offset):
            data = real_pread(fd, n, offset)
            reads.append(len(data))
            return data

        with mock.patch.object(cl_chain.os, 'pread', counting_pread):
            data = self.chain.read_tail(1000)
        self.assertEqual(b'END\n', data[-4:])
        self.assertEqual(1000, len(data))
        self.assertEqual(1000, sum(reads))

    def test_bad_arguments(self):
        self.write('console.log', b'abc')
        before = self.state()
        for kwargs in ({'max_bytes': -1}, {'length': -1},
                       {'max_bytes': '10'}, {'length': 1.5},
                       {'max_bytes': True}):
            self.assertRaises(exception.InvalidInput, self.chain.read_tail,
                              **kwargs)
        self.assertEqual(before, self.state())


class TestUnsafeMembers(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.secret = os.path.join(self.root, 'secret')
        self.write('secret', b'do not read', directory=self.root)
        self.write('console.log', b'log')

    def _assert_refused(self, error=exception.UnsafeChainFile):
        before = self.state()
        self.assertRaises(error, self.chain.scan)
        self.assertRaises(error, self.chain.read_tail)
        self.assertRaises(error, self.chain.read, 0)
        self.assertRaises(error, self.chain.describe, 'h', UUID)
        self.assertEqual(before, self.state())

    def test_symlink_member(self):
        os.symlink(self.secret, os.path.join(self.dir, 'console.log.0'))
        self._assert_refused()
        self.assertRaises(exception.UnsafeChainFile, self.chain.read_chunk,
                          'console.log.0', 0, 10)

    def test_symlinked_log(self):
        os.unlink(os.path.join(self.dir, 'console.log'))
        os.symlink(self.secret, os.path.join(self.dir, 'console.log'))
        self._assert_refused()

    def test_directory_member(self):
        os.mkdir(os.path.join(self.dir, 'console.history.000001'))
        self._assert_refused()
        self.assertRaises(exception.UnsafeChainFile, self.chain.read_chunk,
                          'console.history.000001', 0, 10)

    def test_fifo_member_does_not_hang(self):
        os.mkfifo(os.path.join(self.dir, 'console.log.0'))
        self._assert_refused()
        self.assertRaises(exception.UnsafeChainFile, self.chain.read_chunk,
                          'console.log.0', 0, 10)

    def test_missing_directory(self):
        chain = cl_chain.ConsoleLogChain(os.path.join(self.root, 'nope'),
                                         conf=self.conf)
        self.assertRaises(exception.InstanceDirNotFound, chain.scan)
        self.assertRaises(exception.InstanceDirNotFound, chain.read_tail)
        self.assertFalse(os.path.exists(os.path.join(self.root, 'nope')))

    def test_unreadable_member(self):
        # We run as root, which reads anything: inject the EACCES a
        # non-root nova-compute gets.
        real_open = os.open

        def denying_open(path, flags, *args):
            if os.path.basename(path) == 'console.log':
                raise PermissionError(errno.EACCES, 'Permission denied')
            return real_open(path, flags, *args)

        before = self.state()
        with mock.patch.object(cl_chain.os, 'open', denying_open):
            self.assertRaises(exception.ChainFileUnreadable,
                              self.chain.read_tail)
            self.assertRaises(exception.ChainFileUnreadable,
                              self.chain.read_chunk, 'console.log', 0, 1)
        self.assertEqual(before, self.state())

    def test_bad_base_offset_file(self):
        self.write(cl_chain.BASE_OFFSET_NAME, b'minus one')
        self.assertRaises(exception.ChainFileUnreadable, self.chain.read, 0)


class TestRead(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.write('console.history.000001', b'0123')
        self.write('console.log.0', b'456')
        self.write('console.log', b'789')
        self.stream = b'0123456789'

    def test_pages_cover_stream(self):
        for page in (1, 2, 3, 4, 7, 10, 100):
            data, offset = b'', 0
            while True:
                r = self.chain.read(offset, page)
                self.assertEqual(offset, r.start)
                self.assertFalse(r.truncated)
                if not r.data:
                    break
                self.assertLessEqual(len(r.data), page)
                data += r.data
                self.assertEqual(r.start + len(r.data), r.next)
                offset = r.next
            self.assertEqual(self.stream, data)
            self.assertEqual(10, offset)

    def test_negative_start(self):
        self.assertEqual(cl_chain.ReadResult(b'789', 7, 10, False),
                         self.chain.read(-3))
        self.assertEqual(cl_chain.ReadResult(self.stream, 0, 10, False),
                         self.chain.read(-100))
        self.assertEqual(cl_chain.ReadResult(b'78', 7, 9, False),
                         self.chain.read(-3, 2))

    def test_beyond_end(self):
        # Decided: no data and next = the current end (resynchronise).
        self.assertEqual(cl_chain.ReadResult(b'', 10, 10, False),
                         self.chain.read(10))
        self.assertEqual(cl_chain.ReadResult(b'', 10, 10, False),
                         self.chain.read(55))

    def test_growing_log(self):
        r = self.chain.read(0)
        with open(os.path.join(self.dir, 'console.log'), 'ab') as f:
            f.write(b'AB')
        self.assertEqual(b'AB', self.chain.read(r.next).data)

    def test_base_offset(self):
        self.write(cl_chain.BASE_OFFSET_NAME, b'1000\n')
        self.assertEqual(1000, self.chain.base_offset())
        r = self.chain.read(0, 4)
        self.assertEqual(cl_chain.ReadResult(b'0123', 1000, 1004, True), r)
        self.assertEqual(cl_chain.ReadResult(b'4567', 1004, 1008, False),
                         self.chain.read(1004, 4))
        self.assertEqual(cl_chain.ReadResult(b'89', 1008, 1010, False),
                         self.chain.read(-2))
        self.assertTrue(self.chain.read(-11).truncated)
        self.assertEqual(1000, self.chain.read(-11).start)

    def test_zero_max_bytes(self):
        self.assertEqual(cl_chain.ReadResult(b'', 3, 3, False),
                         self.chain.read(3, 0))

    def test_bad_arguments(self):
        before = self.state()
        for args in ((None,), ('0',), (1.0,), (0, -1), (True,)):
            self.assertRaises(exception.InvalidInput, self.chain.read,
                              *args)
        self.assertEqual(before, self.state())


class TestDescribe(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.write('console.history.000001', b'hist')
        self.write('console.log.1', b'b1b1')
        self.write('console.log', b'live!')

    def test_files(self):
        s = self.chain.describe('host1', UUID, checksums=True)
        self.assertEqual('host1', s.host)
        self.assertEqual(UUID, s.instance_uuid)
        self.assertIsNone(s.stash_id)
        self.assertEqual(0, s.base_offset)
        self.assertEqual(
            [(0, 'console.history.000001', 'history', 4, False),
             (1, 'console.log.1', 'backup', 4, False),
             (2, 'console.log', 'log', 5, True)],
            [(f.position, f.name, f.kind, f.size, f.live) for f in s.files])
        self.assertEqual(hashlib.sha256(b'hist').hexdigest(),
                         s.files[0].sha256)
        self.assertEqual(hashlib.sha256(b'b1b1').hexdigest(),
                         s.files[1].sha256)
        self.assertIsNone(s.files[2].sha256)
        self.assertIsNone(s.files[0].tail)

    def test_no_checksums_by_default(self):
        s = self.chain.describe('h', UUID)
        self.assertEqual([None] * 3, [f.sha256 for f in s.files])

    def test_tails_merge(self):
        whole = b'histb1b1live!'
        for n in (0, 1, 5, 6, 9, 13, 100):
            s = self.chain.describe('h', UUID, tail_bytes=n)
            self.assertEqual(whole[-n:] if n else b'', s.merged_tail(n))

    def test_stash_live_names(self):
        s = self.chain.describe('h', UUID, checksums=True, stash_id='s1')
        self.assertEqual([False] * 3, [f.live for f in s.files])
        self.assertEqual(hashlib.sha256(b'live!').hexdigest(),
                         s.files[2].sha256)
        s = self.chain.describe('h', UUID, checksums=True, stash_id='s1',
                                live_names=('console.log.1',))
        self.assertEqual([False, True, False], [f.live for f in s.files])
        self.assertIsNone(s.files[1].sha256)

    def test_base_offset(self):
        self.write(cl_chain.BASE_OFFSET_NAME, b'77\n')
        self.assertEqual(77, self.chain.describe('h', UUID).base_offset)

    def test_bad_tail_bytes(self):
        self.assertRaises(exception.InvalidInput, self.chain.describe, 'h',
                          UUID, tail_bytes=-1)


class TestReadChunk(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.write('console.log.0', b'0123456789')
        self.write('console.history.000001', b'abc')

    def test_chunks(self):
        self.assertEqual((b'0123', False),
                         self.chain.read_chunk('console.log.0', 0, 4))
        self.assertEqual((b'89', True),
                         self.chain.read_chunk('console.log.0', 8, 4))
        self.assertEqual((b'', True),
                         self.chain.read_chunk('console.log.0', 10, 4))
        self.assertEqual((b'abc', True), self.chain.read_chunk(
            'console.history.000001', 0, 3))
        self.assertEqual((b'', False),
                         self.chain.read_chunk('console.log.0', 0, 0))

    def test_not_a_member_name(self):
        self.write('disk', b'secret')
        before = self.state(self.root)
        for name in ('../' + UUID + '/console.log.0', '/etc/passwd',
                     'console.log.0/..', 'console.log\0', '..', '', 'disk',
                     'console.log.01', 'console.history.1', None, b'x',
                     'console.history.base', './console.log.0'):
            self.assertRaises(exception.InvalidInput, self.chain.read_chunk,
                              name, 0, 10)
        self.assertEqual(before, self.state(self.root))

    def test_absent_member(self):
        e = self.assertRaises(exception.ChainFileNotFound,
                              self.chain.read_chunk, 'console.log', 0, 10)
        self.assertEqual('console.log', e.kwargs['name'])
        self.assertEqual(UUID, e.kwargs['instance'])

    def test_bad_offsets(self):
        for offset, length in ((11, 1), (-1, 1), (0, -1), ('0', 1)):
            self.assertRaises(exception.InvalidInput, self.chain.read_chunk,
                              'console.log.0', offset, length)


class TestLastLines(base.BaseTestCase):

    def test_as_nova(self):
        self.assertEqual(b'b\n', cl_chain.last_lines(b'a\nb\n', 2))
        self.assertEqual(b'', cl_chain.last_lines(b'a\nb\n', 1))
        self.assertEqual(b'', cl_chain.last_lines(b'a\nb\n', 0))
        self.assertEqual(b'a\nb\n', cl_chain.last_lines(b'a\nb\n', None))
        self.assertRaises(exception.InvalidInput, cl_chain.last_lines,
                          b'', -1)
