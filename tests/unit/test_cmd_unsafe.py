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

"""``show`` and ``status`` on a tree they must not trust.

Symlinked instance or stash directories are refused, never followed; a
FIFO or an oversize state file is reported, never read (a FIFO would
block the command for ever).
"""

import io
import os

import fixtures

from nova_consolelog.cmd import main as cl_main
from nova_consolelog import fileutils
from nova_consolelog import migration
from nova_consolelog import stash as cl_stash

from tests.unit import status_tree

UUID_A = status_tree.UUID_A
UUID_B = status_tree.UUID_B
UUID_C = status_tree.UUID_C


class UnsafeTreeTest(status_tree.StatusTreeTestCase):
    """The status tests' tree and helpers, on a tree made unsafe."""

    def show(self, *args):
        out = io.TextIOWrapper(io.BytesIO(), encoding='utf-8')
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cl_main.main(['--config-file', self.config_file, 'show'] +
                            list(args))
        out.flush()
        return code, out.buffer.getvalue(), err.getvalue()

    def elsewhere(self, data=b'secret\n'):
        target = os.path.join(self.root, 'elsewhere')
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, 'console.log'), 'wb') as f:
            f.write(data)
        return target

    def assertRefused(self, result, expect='symbolic link'):
        code, out, err = result
        self.assertEqual(cl_main.EXIT_USAGE, code, err)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertNotIn('Traceback', err)
        self.assertIn(expect, err)
        self.assertNotIn(b'secret', out if isinstance(out, bytes)
                         else out.encode())

    def test_show_symlinked_instance_directory(self):
        os.symlink(self.elsewhere(), os.path.join(self.instances, UUID_C))
        before = self.snapshot()
        self.assertRefused(self.show(UUID_C))
        self.assertEqual(before, self.snapshot())

    def test_show_symlinked_directory_path(self):
        link = os.path.join(self.root, 'link')
        os.symlink(self.elsewhere(), link)
        self.assertRefused(self.show(link))
        self.assertRefused(self.show(link + '/'))

    def test_show_real_directory_still_works(self):
        target = self.elsewhere(b'mine\n')
        code, out, err = self.show(target)
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertEqual(b'mine\n', out)

    def test_status_symlinked_instance_directory(self):
        self.populate()
        os.symlink(self.elsewhere(), os.path.join(self.instances, UUID_C))
        before = self.snapshot()
        self.assertRefused(self.status('--instance', UUID_C))
        code, out, err = self.status('--format', 'json')
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('symbolic link: not followed', out)
        self.assertNotIn('console.log"', out.split(UUID_C)[1][:300])
        self.assertEqual(before, self.snapshot())

    def test_status_symlinked_stash_directories(self):
        stash = self.populate()
        parent = os.path.join(self.stash_root, UUID_B)
        # A symlinked stash next to the real one.
        os.symlink(self.elsewhere(), os.path.join(parent, 'evil-stash'))
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('stash evil-stash is a symbolic link', out)
        self.assertIn(stash.stash_id, out)
        # The instance's whole stash directory a symlink.
        moved = parent + '.real'
        os.rename(parent, moved)
        os.symlink(moved, parent)
        self.assertRefused(self.status('--instance', UUID_B))
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('stash directory %s is a symbolic link' % parent, out)

    def test_status_fifo_manifest(self):
        stash = self.populate()
        manifest = os.path.join(stash.path, cl_stash.MANIFEST)
        os.unlink(manifest)
        os.mkfifo(manifest)
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('stash %s unreadable' % stash.stash_id, out)
        self.assertIn('not a regular file', out)
        # The other instance is still reported.
        self.assertIn('instance %s' % UUID_A, out)

    def test_status_oversize_manifest(self):
        stash = self.populate()
        with open(os.path.join(stash.path, cl_stash.MANIFEST), 'wb') as f:
            f.write(b' ' * (fileutils.MAX_STATE_BYTES + 1))
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('stash %s unreadable' % stash.stash_id, out)
        self.assertIn('more than', out)

    def test_status_symlinked_manifest(self):
        stash = self.populate()
        manifest = os.path.join(stash.path, cl_stash.MANIFEST)
        os.rename(manifest, manifest + '.real')
        os.symlink(manifest + '.real', manifest)
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('symbolic link', out)

    def test_status_fifo_and_oversize_records(self):
        self.populate()
        steps = migration.ConsoleLogMigration(self.conf, 'host1', None)
        os.unlink(steps.record(UUID_B).path)
        os.mkfifo(steps.record(UUID_B).path)
        with open(steps.record(UUID_A).path, 'wb') as f:
            f.write(b'{' * (fileutils.MAX_STATE_BYTES + 10))
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('hand-over record %s unreadable' %
                      steps.record(UUID_B).path, out)
        self.assertIn('hand-over record %s unreadable' %
                      steps.record(UUID_A).path, out)

    def test_status_fifo_import_progress(self):
        self.populate()
        directory = os.path.join(self.instances, UUID_A)
        sidecars = [n for n in os.listdir(directory)
                    if n.endswith('.json')]
        self.assertEqual(1, len(sidecars), os.listdir(directory))
        path = os.path.join(directory, sidecars[0])
        os.unlink(path)
        os.mkfifo(path)
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code, err)
        self.assertIn('progress of import host1-stash1 unreadable', out)

    def test_status_instance_uuid_canonical(self):
        self.populate()
        code, out, err = self.status('--instance', UUID_A.upper())
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn('instance %s' % UUID_A, out)
