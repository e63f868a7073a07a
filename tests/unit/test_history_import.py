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

"""Importing another host's chain as history: resume, retention, faults."""

import errno
import hashlib
import logging
import os

import fixtures

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import import_ledger

from tests import fixtures as test_fixtures

SOURCE = [('console.log.1', b'first file\n'), ('console.log.0', b'second\n'),
          ('console.log', b'third, the live one\n')]
SOURCE_BYTES = b''.join(data for _name, data in SOURCE)
FILES = [(name, len(data)) for name, data in SOURCE]
# Small blocks: every file of SOURCE is several blocks.
BLOCK = 4


def digests_for(files, data=None):
    """The source's hash lists of ``files`` (data from SOURCE)."""
    data = dict(SOURCE, **(data or {}))
    try:
        return {name: (BLOCK, [hashlib.sha256(
            data.get(name, b'\0' * size)[i:i + BLOCK]).hexdigest()
            for i in range(0, size, BLOCK)]) for name, size in files}
    except (TypeError, ValueError):
        return {}


class ImportTestCase(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='nova_consolelog', level=logging.INFO))

    def begin(self, import_id, files, data=None, chain=None, **kwargs):
        chain = chain or self.chain
        return chain.begin_import(import_id, files,
                                  digests_for(files, data), **kwargs)

    def pull(self, imp, chunk=5):
        """What the pull engine does, chunk by chunk.

        Fetch what is wanted, write it, record progress.
        """
        for name, data in SOURCE:
            start, end = imp.wanted(name)
            while start < end:
                piece = data[start:min(end, start + chunk)]
                imp.write(name, start, piece)
                start += len(piece)
                imp.checkpoint(name, start)

    def visible(self):
        """What a reader sees: member names with contents, and the base."""
        return ({f.name: self.chain.read_chunk(f.name, 0, 10 ** 6)[0]
                 for f in self.chain.scan()}, self.chain.base_offset())

    def commit_failing_at(self, step, imp):
        """``imp.commit()`` with the ``step``-th os call failing.

        Returns ``(committed, where)``; ``where`` names the call that
        failed, None when the commit made fewer calls than ``step`` (it
        then must have succeeded: the loop over the steps is done).
        """
        faulty = test_fixtures.FaultyOS(step)
        with test_fixtures.faulty_os(faulty):
            try:
                imp.commit()
                committed = True
            except exception.ConsoleLogError:
                committed = False
        if faulty.failed is None:
            self.assertTrue(committed)
            return committed, None
        return committed, 'step %d (%s)' % (step, faulty.failed)


class TestImport(ImportTestCase):

    def test_import_into_empty_chain(self):
        imp = self.begin('mig-1', FILES, base_offset=500)
        self.assertEqual(0, imp.skip)
        self.pull(imp)
        self.assertEqual('console.history.000001', imp.commit())
        self.assertEqual({'console.history.000001': SOURCE_BYTES},
                         self.visible()[0])
        self.assertEqual(500, self.chain.base_offset())
        # The ledger remembers the import: it is never installed twice.
        self.assertEqual([import_ledger.LEDGER_NAME,
                          'console.history.000001',
                          cl_chain.BASE_OFFSET_NAME], sorted(
                              os.listdir(self.dir)))
        self.assertEqual(SOURCE_BYTES, self.chain.read_tail())
        self.assertEqual(500, self.chain.read(0).start)

    def test_history_goes_before_the_live_log(self):
        self.write('console.log', b'new qemu\n')
        imp = self.begin('m', FILES)
        self.pull(imp, chunk=1000)
        imp.commit()
        self.assertEqual(SOURCE_BYTES + b'new qemu\n',
                         self.chain.read_tail())

    def test_newer_import_after_older_history(self):
        self.write('console.history.000004', b'older\n')
        self.write(cl_chain.BASE_OFFSET_NAME, b'9\n')
        imp = self.begin('m', FILES, base_offset=1234)
        self.pull(imp)
        self.assertEqual('console.history.000005', imp.commit())
        self.assertEqual(b'older\n' + SOURCE_BYTES, self.chain.read_tail())
        # The chain had history: its base is kept.
        self.assertEqual(9, self.chain.base_offset())

    def test_out_of_order_writes(self):
        imp = self.begin('m', FILES)
        for name, data in reversed(SOURCE):
            for offset in reversed(range(0, len(data), 3)):
                imp.write(name, offset, data[offset:offset + 3])
        imp.commit()
        self.assertEqual(SOURCE_BYTES, self.chain.read_tail())

    def test_commit_refuses_missing_bytes(self):
        imp = self.begin('m', FILES)
        imp.write('console.log.1', 0, SOURCE[0][1])
        before = self.visible()
        e = self.assertRaises(exception.InstallFailed, imp.commit)
        self.assertIn('console.log.0', str(e))
        self.assertEqual(before, self.visible())

    def test_empty_source(self):
        imp = self.begin('m', [])
        self.assertEqual('console.history.000001', imp.commit())
        self.assertEqual(b'', self.chain.read_tail())

    def test_abort(self):
        imp = self.begin('m', FILES)
        imp.write('console.log.1', 0, b'first')
        imp.checkpoint('console.log.1', 5)
        imp.abort()
        self.assertEqual([], os.listdir(self.dir))
        self.assertRaises(exception.InvalidInput, imp.write,
                          'console.log.1', 0, b'f')
        self.assertRaises(exception.InvalidInput, imp.checkpoint,
                          'console.log.1', 6)
        self.assertRaises(exception.InvalidInput, imp.commit)
        self.assertEqual([], os.listdir(self.dir))

    def test_bad_input_changes_nothing(self):
        before = self.state()
        for import_id in ('../x', '', 'a' * 65, 'a b', 'a/b', None, 3):
            self.assertRaises(exception.InvalidInput,
                              self.begin, import_id, FILES)
        for files in ([('../x', 1)], [('console.log', -1)],
                      [('console.log', 1), ('console.log', 2)],
                      [('disk', 1)], 'console.log', [('console.log',)],
                      [('console.log', '1')]):
            self.assertRaises(exception.InvalidInput,
                              self.begin, 'm', files)
        self.assertRaises(exception.InvalidInput, self.begin,
                          'm', FILES, base_offset=-1)
        self.assertEqual(before, self.state())
        imp = self.begin('m', FILES)
        staged = self.state()
        for name, offset, data in (('console.log.1', 10, b'xx'),
                                   ('console.log.1', -1, b'x'),
                                   ('console.log.5', 0, b'x'),
                                   ('console.log.1', 0, b'x' * 12)):
            self.assertRaises(exception.InvalidInput, imp.write, name,
                              offset, data)
        self.assertRaises(exception.InvalidInput, imp.checkpoint,
                          'console.log.1', 12)
        self.assertRaises(exception.InvalidInput, imp.wanted, 'disk')
        self.assertEqual(staged, self.state())

    def test_missing_directory(self):
        chain = cl_chain.ConsoleLogChain(os.path.join(self.root, 'gone'),
                                         conf=self.conf)
        self.assertRaises(exception.InstanceDirNotFound,
                          self.begin, 'm', FILES, chain=chain)
        self.assertFalse(os.path.exists(os.path.join(self.root, 'gone')))


class TestSkip(ImportTestCase):

    def test_history_max_bytes_skips_oldest(self):
        self.conf.set_override('history_max_bytes', 20, 'consolelog')
        imp = self.begin('m', FILES, base_offset=100)
        skip = len(SOURCE_BYTES) - 20
        self.assertEqual(skip, imp.skip)
        # The first file is entirely skipped, the second in part.
        self.assertEqual((11, 11), imp.wanted('console.log.1'))
        self.assertEqual((skip - 11, 7), imp.wanted('console.log.0'))
        self.assertEqual((0, 20), imp.wanted('console.log'))
        self.pull(imp)
        imp.commit()
        self.assertEqual(SOURCE_BYTES[-20:], self.chain.read_tail())
        self.assertEqual(100 + skip, self.chain.base_offset())
        self.assertIn('without its oldest %d byte(s)' % skip,
                      self.logger.output)
        # Offsets stay those of the source stream.
        r = self.chain.read(100 + skip + 3, 4)
        self.assertEqual(SOURCE_BYTES[skip + 3:skip + 7], r.data)

    def test_bytes_before_skip_dropped_on_write(self):
        self.conf.set_override('history_max_bytes', 20, 'consolelog')
        imp = self.begin('m', FILES)
        for name, data in SOURCE:
            imp.write(name, 0, data)  # whole files, skip or not
        imp.commit()
        self.assertEqual(SOURCE_BYTES[-20:], self.chain.read_tail())


class TestResume(ImportTestCase):

    def test_resume_wants_only_the_rest(self):
        imp = self.begin('mig', FILES)
        name, data = SOURCE[0]
        imp.write(name, 0, data)
        imp.checkpoint(name, len(data))
        imp.write('console.log.0', 0, b'sec')
        imp.checkpoint('console.log.0', 3)
        imp.write('console.log.0', 3, b'ond')  # written, not verified
        imp.close()  # the process dies here
        self.assertEqual([], self.chain.scan())

        imp = self.begin('mig', FILES)
        self.assertEqual((11, 11), imp.wanted('console.log.1'))
        self.assertEqual((3, 7), imp.wanted('console.log.0'))
        self.assertEqual((0, 20), imp.wanted('console.log'))
        self.pull(imp)
        imp.commit()
        self.assertEqual(SOURCE_BYTES, self.chain.read_tail())
        self.assertEqual(['console.history.000001'],
                         [f.name for f in self.chain.scan()])
        self.assertFalse(any(n.startswith(cl_chain.PARTIAL_PREFIX)
                             for n in os.listdir(self.dir)))

    def test_other_files_start_over(self):
        imp = self.begin('mig', FILES)
        imp.write('console.log.1', 0, SOURCE[0][1])
        imp.checkpoint('console.log.1', 11)
        imp.close()
        other = [('console.log', 5)]
        imp = self.begin('mig', other, data={'console.log': b'12345'})
        self.assertEqual((0, 5), imp.wanted('console.log'))
        imp.write('console.log', 0, b'12345')
        imp.commit()
        self.assertEqual(b'12345', self.chain.read_tail())

    def test_remove_partials(self):
        imp = self.begin('old', FILES)
        imp.write('console.log.1', 0, b'x')
        imp.checkpoint('console.log.1', 1)
        imp.close()
        self.write('console.log', b'live')
        self.assertEqual([], self.chain.remove_partials(older_than=3600))
        removed = self.chain.remove_partials(0)
        self.assertEqual(['.console.history.partial-old',
                          '.console.history.partial-old.json'], removed)
        self.assertEqual(['console.log'], os.listdir(self.dir))


class TestRetention(ImportTestCase):

    def _import(self, import_id, data):
        imp = self.begin(import_id, [('console.log', len(data))],
                         data={'console.log': data})
        imp.write('console.log', 0, data)
        return imp.commit()

    def test_max_files(self):
        self.conf.set_override('history_max_files', 2, 'consolelog')
        self._import('a', b'aaaa')
        self._import('b', b'bb')
        self.assertEqual(0, self.chain.base_offset())
        self._import('c', b'c')
        self.assertEqual(['console.history.000002',
                          'console.history.000003'],
                         [f.name for f in self.chain.scan()])
        self.assertEqual(4, self.chain.base_offset())
        self.assertEqual(b'bbc', self.chain.read_tail())
        self.assertIn('Dropped 4 byte(s)', self.logger.output)
        self.assertEqual(cl_chain.ReadResult(b'bbc', 4, 7, True),
                         self.chain.read(0))

    def test_max_bytes_never_drops_the_new_file(self):
        self.conf.set_override('history_max_bytes', 5, 'consolelog')
        self._import('a', b'aaa')
        self._import('b', b'bbb')
        self.assertEqual(['console.history.000002'],
                         [f.name for f in self.chain.scan()])
        self.assertEqual(3, self.chain.base_offset())
        self._import('c', b'ccccc')
        self.assertEqual(['console.history.000003'],
                         [f.name for f in self.chain.scan()])
        self.assertEqual(6, self.chain.base_offset())
        self.assertEqual(b'ccccc', self.chain.read_tail())

    def test_offsets_stable_across_retention(self):
        self.conf.set_override('history_max_files', 1, 'consolelog')
        self._import('a', b'0123')
        self.write('console.log', b'4567')
        before = self.chain.read(6, 2)
        self.assertEqual(b'67', before.data)
        self._import('b', b'')
        self.assertEqual(before, self.chain.read(6, 2))


class TestInterruptedInstall(ImportTestCase):

    def _prepare(self, had_history):
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        self.write('console.log', b'live\n')
        if had_history:
            self.write('console.history.000001', b'old history\n')
            self.write(cl_chain.BASE_OFFSET_NAME, b'42\n')
        self.conf.set_override('history_max_files', 1, 'consolelog')
        imp = self.begin('mig', FILES, base_offset=1000)
        self.pull(imp, chunk=100)
        return imp

    def _check_every_step(self, had_history):
        step = 0
        outcomes = set()
        while True:
            step += 1
            imp = self._prepare(had_history)
            before = self.visible()
            committed, where = self.commit_failing_at(step, imp)
            if where is None:
                break
            names, base = self.visible()
            if not committed:
                # The previous state, exactly; the import resumable or
                # gone, never a stray visible history.
                self.assertEqual(before, (names, base), where)
                outcomes.add('kept')
                if os.path.exists(imp.staging):
                    imp.close()
                    again = self.begin('mig', FILES, base_offset=1000)
                    self.assertEqual([], [n for n, _s in FILES
                                          if again.wanted(n)[0] <
                                          again.wanted(n)[1]], where)
                    again.commit()
                    names, base = self.visible()
                    outcomes.add('resumed')
                else:
                    continue
            else:
                outcomes.add('installed')
            # Installed: the new history is there, complete.
            history = [n for n in names if n.startswith('console.history')]
            self.assertIn(SOURCE_BYTES, [names[n] for n in history], where)
            self.assertEqual(b'live\n', names['console.log'], where)
            expected_base = 42 + 12 if had_history else 1000
            if len(history) == 1:
                self.assertEqual(expected_base, base, where)
        self.assertGreater(step, 8)
        self.assertIn('kept', outcomes)

    def test_every_step_fails_no_history_before(self):
        self._check_every_step(had_history=False)

    def test_every_step_fails_with_history_before(self):
        self._check_every_step(had_history=True)

    def test_enospc_on_write(self):
        self.write('console.history.000001', b'old\n')
        before = self.visible()
        imp = self.begin('mig', FILES)
        with test_fixtures.faulty_os(test_fixtures.FaultyOS(1, errno.ENOSPC)):
            self.assertRaises(exception.InstallFailed, imp.write,
                              'console.log.1', 0, b'first')
        self.assertEqual(before, self.visible())
        self.assertEqual(['console.history.000001'],
                         os.listdir(self.dir))

    def test_enospc_on_fsync(self):
        self.write('console.history.000001', b'old\n')
        before = self.visible()
        imp = self.begin('mig', FILES)
        self.pull(imp, chunk=100)

        class NoSpace(test_fixtures.FaultyOS):
            def __getattr__(self, name):
                if name == 'fsync':
                    def fail(fd):
                        raise OSError(errno.ENOSPC, 'No space left')
                    return fail
                return getattr(os, name)

        with test_fixtures.faulty_os(NoSpace(0)):
            self.assertRaises(exception.InstallFailed, imp.commit)
        self.assertEqual(before, self.visible())
        self.assertEqual(['console.history.000001'],
                         os.listdir(self.dir))


class TestFaultAnywhereThenResume(ImportTestCase):

    def test_every_step_of_a_whole_import(self):
        step = 0
        while True:
            step += 1
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            self.write('console.history.000001', b'old\n')
            before = self.visible()
            faulty = test_fixtures.FaultyOS(step)
            imp = None
            with test_fixtures.faulty_os(faulty):
                try:
                    imp = self.begin('mig', FILES)
                    self.pull(imp, chunk=7)
                    imp.commit()
                    done = True
                except exception.ConsoleLogError:
                    done = False
            where = 'step %d (%s)' % (step, faulty.failed)
            if imp is not None:
                imp.close()
            if not done:
                self.assertEqual(before, self.visible(), where)
                # A retry without faults resumes (or starts over) and
                # installs exactly the source bytes.
                imp = self.begin('mig', FILES)
                self.pull(imp, chunk=7)
                imp.commit()
            self.assertEqual(b'old\n' + SOURCE_BYTES,
                             self.chain.read_tail(), where)
            leftovers = [n for n in os.listdir(self.dir)
                         if n.startswith('.') and
                         n != import_ledger.LEDGER_NAME]
            if leftovers:
                # Only a progress file whose removal failed after the
                # install (logged); housekeeping removes it.
                self.assertEqual('unlink', faulty.failed, where)
                self.assertIn('Could not remove', self.logger.output)
                self.assertEqual(leftovers, self.chain.remove_partials(0))
            if faulty.failed is None:
                break
        self.assertGreater(step, 20)
