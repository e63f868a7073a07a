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

"""``nova-consolelog show``, run in-process through the dispatcher."""

import errno
import io
import json
import os
from unittest import mock

import fixtures

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main

from tests import fixtures as test_fixtures

UUID = test_fixtures.UUID


class TestShow(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.config = os.path.join(self.root, 'nova.conf')
        with open(self.config, 'w') as f:
            f.write('[consolelog]\ninstances_path = %s\n'
                    'max_console_bytes = 1000\n' % self.root)
        self.write('console.history.000001', b'history\n')
        self.write('console.log.0', b'zero\n')
        self.write('console.log', b'live \xff\n')
        self.stream = b'history\nzero\nlive \xff\n'

    def run_show(self, *args):
        stdout = io.TextIOWrapper(io.BytesIO(), encoding='utf-8')
        stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', stdout))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', stderr))
        try:
            code = cl_main.main(['--config-file', self.config, 'show'] +
                                list(args))
        except SystemExit as e:
            code = e.code
        stdout.flush()
        return code, stdout.buffer.getvalue(), stderr.getvalue()

    def test_by_uuid(self):
        code, out, err = self.run_show(UUID)
        self.assertEqual((0, self.stream, ''), (code, out, err))

    def test_by_directory(self):
        self.assertEqual((0, self.stream, ''), self.run_show(self.dir))

    def test_equals_read_tail(self):
        code, out, _err = self.run_show(UUID, '--length', '2',
                                        '--max-bytes', '12')
        self.assertEqual(0, code)
        self.assertEqual(self.chain.read_tail(12, 2), out)
        self.assertEqual(b'zero\nlive \xff\n'[-12:], self.run_show(
            UUID, '--max-bytes', '12')[1])

    def test_page(self):
        code, out, err = self.run_show(UUID, '--start', '3',
                                       '--max-bytes', '5')
        self.assertEqual((0, b'tory\n'), (code, out))
        self.assertIn('next offset: 8', err)
        code, out, err = self.run_show(UUID, '--start', '-3')
        self.assertEqual(b' \xff\n', out)
        self.assertIn('next offset: %d' % len(self.stream), err)

    def test_page_truncated(self):
        self.write(cl_chain.BASE_OFFSET_NAME, b'50\n')
        code, out, err = self.run_show(UUID, '--start', '0',
                                       '--max-bytes', '4')
        self.assertEqual((0, b'hist'), (code, out))
        self.assertIn('starts at 50', err)
        self.assertIn('next offset: 54', err)

    def test_json(self):
        code, out, _err = self.run_show(UUID, '--format', 'json')
        self.assertEqual(0, code)
        doc = json.loads(out.decode('utf-8'))
        self.assertEqual('history\nzero\nlive \ufffd\n', doc['data'])
        self.assertEqual((0, len(self.stream), False, 0),
                         (doc['start'], doc['next'], doc['truncated'],
                          doc['base_offset']))
        self.assertEqual(['console.history.000001', 'console.log.0',
                          'console.log'], [f['name'] for f in doc['files']])
        code, out, _err = self.run_show(UUID, '--format', 'json',
                                        '--length', '1')
        doc = json.loads(out.decode('utf-8'))
        self.assertEqual('', doc['data'])
        code, out, _err = self.run_show(UUID, '--format', 'json',
                                        '--length', '2')
        doc = json.loads(out.decode('utf-8'))
        self.assertEqual('live \ufffd\n', doc['data'])
        self.assertEqual(len(self.stream) - 7, doc['start'])

    def _assert_bad(self, expected_code, *args):
        before = self.state(self.root)
        code, out, err = self.run_show(*args)
        self.assertEqual(expected_code, code, err)
        self.assertEqual(b'', out)
        self.assertNotIn('Traceback', err)
        self.assertIn('error', err)
        self.assertEqual(before, self.state(self.root))
        return err

    def test_bad_values(self):
        self._assert_bad(2, UUID, '--length', '-1')
        self._assert_bad(2, UUID, '--max-bytes', '-5')
        self._assert_bad(2, UUID, '--length', 'ten')
        self._assert_bad(2, UUID, '--start', '1.5')
        self._assert_bad(2, UUID, '--format', 'xml')
        self._assert_bad(2, UUID, '--start', '0', '--length', '3')

    def test_missing(self):
        err = self._assert_bad(2, os.path.join(self.root, 'nope'))
        self.assertIn('neither an instance uuid nor a directory', err)
        err = self._assert_bad(2, '0c6b5a2e-8e7b-4f1e-9b8f-3f0e2d7c1a90')
        self.assertIn('does not exist', err)
        self._assert_bad(2, 'not-a-uuid')

    def test_symlink_member(self):
        self.write('secret', b'secret', directory=self.root)
        os.symlink(os.path.join(self.root, 'secret'),
                   os.path.join(self.dir, 'console.log.1'))
        err = self._assert_bad(2, UUID)
        self.assertIn('symbolic link', err)

    def test_directory_member(self):
        os.mkdir(os.path.join(self.dir, 'console.log.1'))
        err = self._assert_bad(2, UUID, '--format', 'json')
        self.assertIn('a directory', err)

    def test_unreadable_member(self):
        # Root reads anything: inject the EACCES a non-root user gets.
        real_open = os.open

        def denying_open(path, flags, *args):
            if os.path.basename(path) == 'console.log.0':
                raise PermissionError(errno.EACCES, 'Permission denied')
            return real_open(path, flags, *args)

        before = self.state(self.root)
        with mock.patch.object(cl_chain.os, 'open', denying_open):
            code, out, err = self.run_show(UUID)
        self.assertEqual((1, b''), (code, out))
        self.assertIn('Cannot read', err)
        self.assertNotIn('Traceback', err)
        self.assertEqual(before, self.state(self.root))
