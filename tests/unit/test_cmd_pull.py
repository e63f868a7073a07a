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

"""``nova-consolelog pull``: misuse exits 2 and changes nothing on disk."""

import io
import os
from unittest import mock

import fixtures

from nova_consolelog.cmd import main as cl_main
from nova_consolelog import exception
from nova_consolelog import transfer

from tests import fixtures as test_fixtures

UUID = '3f0e8fb1-1a2b-4c3d-8e9f-0a1b2c3d4e5f'
EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'


def _result(sha256s, released=False):
    return transfer.PullResult(0, len(sha256s), 0.0, 0.0, 0, 's1', released,
                               0, sha256s)


class PullCommandTest(test_fixtures.CommandTestCase):

    def setUp(self):
        super().setUp()
        self.pulls = []
        self.pull_result = _result({'console.log': 'a' * 64})

        def fake_pull(conf, rpcapi, source, instance, **kwargs):
            self.pulls.append((source, instance, kwargs))
            if isinstance(self.pull_result, Exception):
                raise self.pull_result
            return self.pull_result
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.transfer.pull', fake_pull))

    def snapshot(self, dir_mtimes=True):
        """Every path under the temp root: mode, size, mtime.

        ``dir_mtimes=False``: without directories' mtimes, for a run that
        made the instance directory and removed it again (empty) once it
        knew there was nothing to pull.
        """
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                mtime = st.st_mtime_ns if dir_mtimes or name in filenames \
                    else None
                found[path] = (st.st_mode, st.st_size, mtime)
        return found

    def pull(self, *args, transport='fake://'):
        out = io.StringIO()
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        argv = ['--config-file', self.config_file, 'pull']
        if transport is not None:
            argv += ['--transport-url', transport]
        code = cl_main.main(argv + list(args))
        return code, out.getvalue(), err.getvalue()

    def assertRefused(self, args, expect, transport='fake://'):
        before = self.snapshot()
        code, out, err = self.pull(*args, transport=transport)
        self.assertEqual(cl_main.EXIT_USAGE, code, (args, err))
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertNotIn('Traceback', err)
        self.assertIn(expect, err)
        self.assertEqual(before, self.snapshot(), args)
        self.assertEqual([], self.pulls)

    def test_bad_stash_id_creates_nothing(self):
        for bad in ('../x', 'a b', 'x' * 65, 'abc\n', ''):
            self.assertRefused(['--from', 'src', '--instance', UUID,
                                '--stash', bad], 'stash id')
        self.assertFalse(os.path.exists(os.path.join(self.instances, UUID)))

    def test_bad_instance_uuid(self):
        for bad in ('nope', '../' + UUID, UUID + '\n', 'x' * 100000):
            self.assertRefused(['--from', 'src', '--instance', bad],
                               'instance uuid')

    def test_bad_host(self):
        for bad in ('*', '#', 'a b', 'src\n', 'a..b', '', 'src/x'):
            self.assertRefused(['--from', bad, '--instance', UUID],
                               'host name')

    def test_missing_instances_path_not_created(self):
        missing = os.path.join(self.root, 'nope')
        self.configure(missing)
        self.assertRefused(['--from', 'src', '--instance', UUID],
                           'does not exist')
        self.assertFalse(os.path.exists(missing))

    def test_instance_path_is_a_file(self):
        with open(os.path.join(self.instances, UUID), 'w') as f:
            f.write('x')
        self.assertRefused(['--from', 'src', '--instance', UUID],
                           'not a directory')

    def test_instance_path_is_a_symlink(self):
        target = os.path.join(self.root, 'elsewhere')
        os.mkdir(target)
        os.symlink(target, os.path.join(self.instances, UUID))
        self.assertRefused(['--from', 'src', '--instance', UUID],
                           'symbolic link')
        self.assertEqual([], os.listdir(target))

    def test_bad_transport_url(self):
        for url in ('bogus://x', 'not a url', 'rabbit://h:notaport/'):
            self.assertRefused(['--from', 'src', '--instance', UUID],
                               'transport URL', transport=url)

    def test_success_creates_the_instance_directory(self):
        code, out, err = self.pull('--from', 'src', '--instance',
                                   UUID.upper())
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertTrue(os.path.isdir(os.path.join(self.instances, UUID)))
        self.assertEqual([('src', UUID, mock.ANY)], self.pulls)
        self.assertIn('pulled', out)

    def test_empty_source_is_nothing_to_do(self):
        before = self.snapshot(dir_mtimes=False)
        for sha256s in ({}, {'console.log': EMPTY}):
            self.pull_result = _result(sha256s)
            code, out, err = self.pull('--from', 'src', '--instance', UUID)
            self.assertEqual(cl_main.EXIT_NOTHING, code, err)
            self.assertIn('nothing to pull', err)
            self.assertEqual(before, self.snapshot(dir_mtimes=False))

    def test_no_such_stash_is_nothing_to_do(self):
        self.pull_result = exception.StashNotFound(stash_id='s1',
                                                   instance=UUID)
        before = self.snapshot(dir_mtimes=False)
        code, out, err = self.pull('--from', 'src', '--instance', UUID,
                                   '--stash', 's1')
        self.assertEqual(cl_main.EXIT_NOTHING, code, err)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertEqual(before, self.snapshot(dir_mtimes=False))

    def test_failed_pull_exits_1_and_keeps_an_existing_directory(self):
        os.mkdir(os.path.join(self.instances, UUID))
        self.pull_result = exception.TransferFailed(instance=UUID,
                                                    host='src', reason='x')
        code, out, err = self.pull('--from', 'src', '--instance', UUID)
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertTrue(os.path.isdir(os.path.join(self.instances, UUID)))
