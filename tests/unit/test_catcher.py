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

"""RotationCatcher on a real directory with the kernel's inotify.

The two virtlogds are played by file operations in the order the e2e test
test_shared_source_rotates_before_incoming_qemu_starts sees them.
"""

import os
import time

import fixtures
from oslotest import base as test_base

from nova_consolelog import catcher


class TestRotationCatcher(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.directory = os.path.join(root, 'instance')
        os.makedirs(self.directory)
        self.keep = os.path.join(root, 'keep')
        self.catcher = catcher.RotationCatcher(self.directory, self.keep)
        self.addCleanup(self.catcher.cleanup)
        self.catcher.start()

    def path(self, name):
        return os.path.join(self.directory, name)

    def settle(self):
        # Let the watching thread take the events.
        time.sleep(3 * catcher.RotationCatcher.POLL_SECONDS)

    def test_keeps_the_file_the_incoming_virtlogd_unlinks(self):
        # The source's virtlogd rolls over: a new console.log it writes to.
        source = open(self.path('console.log'), 'ab', buffering=0)
        self.addCleanup(source.close)
        source.write(b'585\n')
        self.settle()
        # The destination's QEMU starts: its virtlogd unlinks and creates.
        os.unlink(self.path('console.log'))
        with open(self.path('console.log'), 'ab') as dest:
            dest.write(b'657\n')
        # The source writes on until its QEMU stops.
        source.write(b'586\n')
        source.close()
        self.settle()
        kept = self.catcher.finish()
        self.assertEqual(1, len(kept))
        with open(kept[0], 'rb') as f:
            self.assertEqual(b'585\n586\n', f.read())
        # The destination's own file stays where it is, not kept twice.
        with open(self.path('console.log'), 'rb') as f:
            self.assertEqual(b'657\n', f.read())
        self.assertEqual([os.path.basename(kept[0])], os.listdir(self.keep))

    def test_files_still_in_the_directory_are_not_kept(self):
        with open(self.path('console.log'), 'wb') as f:
            f.write(b'1\n')
        self.settle()
        # A rotation after the destination's QEMU started: renamed, kept
        # in the live chain; other names are none of its business.
        os.rename(self.path('console.log'), self.path('console.log.0'))
        with open(self.path('console.log'), 'wb') as f:
            f.write(b'2\n')
        with open(self.path('notes.txt'), 'wb') as f:
            f.write(b'x\n')
        self.settle()
        self.assertEqual([], self.catcher.finish())
        self.assertEqual([], os.listdir(self.keep))

    def test_oldest_first_and_empty_files_dropped(self):
        for name, data in (('console.log', b'a\n'), ('console.log.0', b''),
                           ('console.log.1', b'b\n')):
            with open(self.path(name), 'wb') as f:
                f.write(data)
            self.settle()
        os.utime(self.path('console.log'), ns=(0, 2 * 10**9))
        os.utime(self.path('console.log.1'), ns=(0, 10**9))
        for name in os.listdir(self.directory):
            os.unlink(self.path(name))
        kept = self.catcher.finish()
        contents = []
        for path in kept:
            with open(path, 'rb') as f:
                contents.append(f.read())
        self.assertEqual([b'b\n', b'a\n'], contents)

    def test_cleanup_removes_what_is_left(self):
        with open(self.path('console.log'), 'wb') as f:
            f.write(b'1\n')
        self.settle()
        os.unlink(self.path('console.log'))
        self.catcher.cleanup()
        self.assertFalse(os.path.exists(self.keep))
