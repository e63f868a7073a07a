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

"""The endpoint's input checks, called directly (no transport needed).

Every case must raise a typed error and change nothing on disk; the same
inputs travel over RabbitMQ in the functional tests.
"""

import os
import uuid


from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog import stash as cl_stash

from tests import fixtures as test_fixtures


class TestManager(test_fixtures.ManagerTestCase):

    def test_read_chunk(self):
        chunk = self.manager.read_console_log_chunk(
            {}, self.uuid, 'console.log.1', 10, 100, compression='none')
        self.assertIsInstance(chunk, cl_objects.ConsoleLogChunk)
        self.assertEqual(self.files['console.log.1'][10:110],
                         chunk.raw_data())

    def test_read_chunk_1_0_caller_gets_1_0_primitive(self):
        primitive = self.manager.read_console_log_chunk(
            {}, self.uuid, 'console.log.0', 0, 4096)
        self.assertEqual('1.0', primitive['nova_consolelog_object.version'])
        chunk = cl_objects.ConsoleLogChunk.obj_from_primitive(primitive)
        self.assertEqual(self.files['console.log.0'][:4096], chunk.data)

    def test_path_names(self):
        for name in ('../secret', '/etc/passwd', self.secret,
                     'console.log/../../secret', '..', '.', '',
                     'console.log\x00', 'console.history.1',
                     'console.log.-1', 'manifest.json'):
            self.assertRejected(exception.ConsoleLogError,
                                'read_console_log_chunk', self.uuid, name,
                                0, 10)

    def test_symlink_member(self):
        os.symlink(self.secret, os.path.join(self.dir, 'console.log.2'))
        self.assertRejected(exception.UnsafeChainFile,
                            'read_console_log_chunk', self.uuid,
                            'console.log.2', 0, 10)
        self.assertRejected(exception.UnsafeChainFile,
                            'describe_console_log', self.uuid)

    def test_instance_uuids(self):
        for bad in ('not-a-uuid', '../' + self.uuid, '', None, 42,
                    [self.uuid], self.uuid + '/..'):
            self.assertRejected(exception.InvalidInput,
                                'read_console_log_chunk', bad, 'console.log',
                                0, 10)
            self.assertRejected(exception.InvalidInput,
                                'describe_console_log', bad)

    def test_unknown_instance(self):
        self.assertRejected(exception.InstanceDirNotFound,
                            'describe_console_log', str(uuid.uuid4()))

    def test_offsets_and_lengths(self):
        size = len(self.files['console.log.0'])
        for offset, length in ((-1, 10), (0, -1), (0, 0),
                               (size + 1, 10), (2 ** 64, 10),
                               (0, cl_manager.MAX_READ + 1), (True, 10),
                               (0, 1.5), ('0', 10), (None, 10)):
            self.assertRejected(exception.InvalidInput,
                                'read_console_log_chunk', self.uuid,
                                'console.log.0', offset, length)

    def test_other_types(self):
        self.assertRejected(exception.InvalidInput,
                            'read_console_log_chunk', self.uuid, 123, 0, 10)
        self.assertRejected(exception.InvalidInput,
                            'read_console_log_chunk', self.uuid,
                            'console.log', 0, 10, compression='lz4')
        self.assertRejected(exception.InvalidInput,
                            'read_console_log_chunk', self.uuid,
                            'console.log', 0, 10, stash_id=5)
        self.assertRejected(exception.InvalidInput,
                            'describe_console_log', self.uuid,
                            checksums='yes')
        self.assertRejected(exception.InvalidInput,
                            'describe_console_log', self.uuid,
                            tail_bytes=-1)

    def test_unknown_stash(self):
        for stash_id in ('0123abcd', '../x', 'a/b', '.', 'x' * 65):
            self.assertRejected(exception.ConsoleLogError,
                                'describe_console_log', self.uuid,
                                stash_id=stash_id)
            self.assertRejected(exception.ConsoleLogError,
                                'release_console_log_stash', self.uuid,
                                stash_id, {})
        self.assertRejected(exception.StashNotFound,
                            'release_console_log_stash', self.uuid,
                            'abcdef', {}, transfer_token='0' * 32,
                            puller_host='dst')

    def test_release_needs_the_token_and_the_roots(self):
        other, stash = self._stash()
        remote = self.manager.open_console_log_transfer(
            {}, other, stash_id=stash.stash_id, puller_host='dst')
        token = remote.transfer_token
        roots = {f.name: hashlist.root(f.size, remote.block_size, f.blocks)
                 for f in remote.files}
        # What describe hands anybody is not enough.
        described = self.manager.describe_console_log(
            {}, other, stash_id=stash.stash_id, checksums=True)
        sha256s = {f.name: f.sha256 for f in described.files}
        self.assertRejected(exception.HandoverRefused,
                            'release_console_log_stash', other,
                            stash.stash_id, sha256s)
        self.assertRejected(exception.HandoverRefused,
                            'release_console_log_stash', other,
                            stash.stash_id, roots, transfer_token='0' * 32,
                            puller_host='dst')
        self.assertRejected(exception.HandoverRefused,
                            'release_console_log_stash', other,
                            stash.stash_id, roots, transfer_token=token,
                            puller_host='another')
        wrong = dict(roots, **{'console.log': '0' * 64})
        self.assertRejected(exception.ChecksumMismatch,
                            'release_console_log_stash', other,
                            stash.stash_id, wrong, transfer_token=token,
                            puller_host='dst')
        fewer = {'console.log': roots['console.log']}
        self.assertRejected(exception.HandoverRefused,
                            'release_console_log_stash', other,
                            stash.stash_id, fewer, transfer_token=token,
                            puller_host='dst')
        self.assertRejected(exception.InvalidInput,
                            'release_console_log_stash', other,
                            stash.stash_id, [1, 2], transfer_token=token,
                            puller_host='dst')
        self.assertTrue(self.manager.release_console_log_stash(
            {}, other, stash.stash_id, roots, transfer_token=token,
            puller_host='dst'))
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          other, stash.stash_id,
                          root=self.conf.consolelog.stash_path,
                          conf=self.conf)

    def test_transfer_granted_to_the_destination_only(self):
        other = str(uuid.uuid4())
        chain_dir = test_fixtures.write_chain(self.conf, other, {
            'console.log': b'bytes'})
        stash = cl_stash.Stash.create(
            other, cl_chain.ConsoleLogChain(chain_dir, conf=self.conf),
            root=self.conf.consolelog.stash_path, conf=self.conf,
            destination='dst')
        self.assertRejected(exception.HandoverRefused,
                            'open_console_log_transfer', other,
                            stash_id=stash.stash_id, puller_host='thief')
        remote = self.manager.open_console_log_transfer(
            {}, other, stash_id=stash.stash_id, puller_host='dst')
        self.assertEqual(1, len(remote.files))

    def test_pins_are_bounded_and_need_the_instance(self):
        for _ in range(cl_stash.MAX_PINS_PER_INSTANCE):
            self.manager.open_console_log_transfer(
                {}, self.uuid, puller_host='dst')
        self.assertRejected(exception.HandoverRefused,
                            'open_console_log_transfer', self.uuid,
                            puller_host='dst')
        # No pin, not even a directory, for an instance this host lacks.
        self.assertRejected(exception.InstanceDirNotFound,
                            'open_console_log_transfer', str(uuid.uuid4()),
                            puller_host='dst')

    def test_pin_of_the_live_chain(self):
        remote = self.manager.open_console_log_transfer(
            {}, self.uuid, puller_host='dst')
        self.assertTrue(remote.stash_id.startswith(cl_stash.PIN_PREFIX))
        # The pin keeps its sizes while the live file grows.
        test_fixtures.write_chain(self.conf, self.uuid, {
            'console.log': self.files['console.log'] + b'more'})
        live = [f for f in remote.files if f.name == 'console.log'][0]
        chunk = self.manager.read_console_log_chunk(
            {}, self.uuid, 'console.log', live.size - 10, 100,
            stash_id=remote.stash_id, compression='none')
        self.assertEqual(self.files['console.log'][-10:], chunk.raw_data())
        self.assertTrue(chunk.eof)

    def test_list_stashes(self):
        other, stash = self._stash()
        sets = self.manager.list_console_log_stashes({}, other,
                                                     tail_bytes=100)
        self.assertEqual([stash.stash_id], [s.stash_id for s in sets])
        self.assertEqual(b'oldnew', sets[0].merged_tail(100))
        self.assertEqual([], self.manager.list_console_log_stashes(
            {}, self.uuid))
