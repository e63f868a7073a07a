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

"""The demo, run in-process on ``fake://`` with the real steps."""

import hashlib
import io
import os
import sys
from unittest import mock

import fixtures
from oslotest import base

from nova_consolelog.cmd import main as cl_main
from nova_consolelog import demo
from nova_consolelog import exception
from nova_consolelog import migration

# Small enough to be quick, large enough for every virtlogd file and for
# several chunks per file: about 240 KB in 64 KiB files, 16 KiB chunks.
SMALL = dict(source_lines=4000, dest_lines=40, max_size=64 * 1024,
             chunk_size=16 * 1024)


class VirtlogdWriterTest(base.BaseTestCase):

    def test_rotates_like_virtlogd(self):
        d = self.useFixture(fixtures.TempDir()).path
        w = demo.VirtlogdWriter(d, max_size=10, max_backups=3)
        data = bytes(range(45))
        w.write(data[:7])
        w.write(data[7:45])
        names = sorted(os.listdir(d))
        self.assertEqual(['console.log', 'console.log.0', 'console.log.1',
                          'console.log.2'], names)

        def read(name):
            with open(os.path.join(d, name), 'rb') as f:
                return f.read()
        # 45 bytes in 10-byte files: the oldest 10 fell off (.3 is never
        # kept with three backups), the rest in order, files exactly full.
        self.assertEqual(data[10:],
                         read('console.log.2') + read('console.log.1') +
                         read('console.log.0') + read('console.log'))
        self.assertEqual(10, len(read('console.log.0')))
        self.assertEqual(5, len(read('console.log')))


class DemoRunTest(base.BaseTestCase):

    def test_hand_over_is_byte_exact(self):
        report = demo.run(**SMALL)
        failed = [c for c in report.checks if not c.ok]
        self.assertEqual([], failed)
        self.assertTrue(report.ok)
        self.assertEqual(['console.log.2', 'console.log.1', 'console.log.0',
                          'console.log'],
                         [f.name for f in report.source_files])
        self.assertEqual(report.source_sha256, report.dest_sha256)
        self.assertEqual(report.source_bytes, report.dest_bytes)
        self.assertEqual(sum(f.size for f in report.source_files),
                         report.source_bytes)
        # The destination: one history file holding the source stream, and
        # virtlogd's new log with what the guest wrote after the move.
        dest = {f.name: f for f in report.dest_files}
        self.assertEqual(report.source_bytes,
                         dest['console.history.000001'].size)
        self.assertEqual(report.after_move_bytes, dest['console.log'].size)
        # Each source file maps onto its own, adjacent range of it.
        position = 0
        for origin, f in zip(report.origins, report.source_files):
            self.assertEqual((f.name, position, position + f.size, 0, True),
                             (origin.source_name, origin.dest_start,
                              origin.dest_end, origin.dropped,
                              origin.matches))
            position += f.size
        # The temporary directories are gone.
        self.assertFalse(os.path.exists(report.workdir))
        # The tail ends with the guest's last line, written on the
        # destination after the hand-over.
        last = SMALL['source_lines'] + SMALL['dest_lines']
        self.assertTrue(report.tail.endswith(
            demo.guest_line(last, report.dest_host)))

    def test_lost_hand_over_is_reported(self):
        # Fault injection: the destination never imports the stash.
        self.useFixture(fixtures.MockPatchObject(
            migration.ConsoleLogMigration,
            'post_live_migration_at_destination'))
        report = demo.run(**SMALL)
        self.assertFalse(report.ok)
        failed = {c.what for c in report.checks if not c.ok}
        self.assertIn('destination stream == source stream + output after '
                      'the move', failed)
        self.assertIn('source released its stash after the destination '
                      'verified it', failed)
        self.assertNotEqual(report.source_sha256, report.dest_sha256)

    def test_shared_instance_path(self):
        report = demo.run(shared=True, **SMALL)
        self.assertEqual([], [c for c in report.checks if not c.ok])
        self.assertTrue(report.shared)
        self.assertEqual(report.source_sha256, report.dest_sha256)
        # The source guest's last lines reached the moved file through the
        # open descriptor, and were installed with the rest.
        late = SMALL['source_lines'] + SMALL['source_lines'] // 1000
        self.assertEqual('guest line %07d' % late,
                         report.source_files[-1].last_line[:18])
        self.assertTrue(all(o.matches for o in report.origins))
        self.assertEqual(report.source_bytes,
                         sum(f.size for f in report.source_files))
        self.assertEqual(['console.history.000001', 'console.log'],
                         [f.name for f in report.dest_files])

    def test_shared_without_move_aside_loses_the_log(self):
        # Fault injection: the destination does not move the chain aside;
        # virtlogd's truncation at the QEMU start then wipes it.
        self.useFixture(fixtures.MockPatchObject(
            migration.ConsoleLogMigration, 'pre_live_migration'))
        report = demo.run(shared=True, **SMALL)
        self.assertFalse(report.ok)
        failed = {c.what for c in report.checks if not c.ok}
        self.assertIn('destination moved the chain aside before its QEMU '
                      'started', failed)
        self.assertIn('destination stream == source stream + output after '
                      'the move', failed)

    def test_keep(self):
        report = demo.run(keep=True, **SMALL)
        self.addCleanup(__import__('shutil').rmtree, report.workdir)
        history = os.path.join(
            report.workdir, report.dest_host, 'instances',
            report.instance_uuid, 'console.history.000001')
        with open(history, 'rb') as f:
            self.assertEqual(report.source_sha256,
                             hashlib.sha256(f.read()).hexdigest())

    def test_bad_input(self):
        for kwargs in ({'source_lines': -1}, {'max_size': 'big'},
                       {'dest_lines': True},
                       {'transport_url': 'bogus://'},
                       {'transport_url': 'not a url'}):
            self.assertRaises(exception.InvalidInput, demo.run, **kwargs)

    def test_unreachable_broker_fails_fast(self):
        # Port 9 (discard) on loopback has no broker: refused at once.
        e = self.assertRaises(exception.InvalidInput, demo.run,
                              transport_url='rabbit://guest:guest@'
                                            '127.0.0.1:9/')
        self.assertIn('ensure-rabbitmq', str(e))


class DemoCommandTest(base.BaseTestCase):

    def _main(self, argv):
        out = io.StringIO()
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cl_main.main(argv)
        return code, out.getvalue(), err.getvalue()

    def test_demo_command(self):
        real_run = demo.run
        with mock.patch.object(demo, 'run',
                               lambda **kw: real_run(**dict(kw, **SMALL))):
            code, out, _err = self._main(['demo'])
        self.assertEqual(cl_main.EXIT_OK, code, out)
        self.assertIn('RESULT: the destination holds the whole console log',
                      out)
        self.assertIn('console.log.2    -> console.history.000001 [0, ', out)
        self.assertNotIn('FAILED', out)
        # Control characters are stripped as nova's API does.
        self.assertNotIn('\x1b', out)

    def test_demo_command_failure_exit_code(self):
        self.useFixture(fixtures.MockPatchObject(
            migration.ConsoleLogMigration,
            'post_live_migration_at_destination'))
        real_run = demo.run
        with mock.patch.object(demo, 'run',
                               lambda **kw: real_run(**dict(kw, **SMALL))):
            code, out, _err = self._main(['demo'])
        self.assertEqual(cl_main.EXIT_FAILED, code)
        self.assertIn('RESULT: FAILED', out)

    def test_bad_transport_url(self):
        code, out, err = self._main(['demo', '--transport-url', 'bogus://'])
        self.assertEqual(cl_main.EXIT_USAGE, code)
        self.assertIn('cannot use transport URL', err)
        self.assertNotIn('Traceback', err)

    def test_help(self):
        e = self.assertRaises(SystemExit, self._main, ['demo', '--help'])
        self.assertEqual(0, e.code)
        text = sys.stdout.getvalue()
        for word in ('--transport-url', '--keep', 'fake://'):
            self.assertIn(word, text)
