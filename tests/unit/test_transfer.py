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

"""The pull engine on oslo.messaging's ``fake://`` driver.

Faults a real peer cannot produce on demand (a chunk damaged in flight, a
timeout on one particular call) are injected by wrapping the client.
Small chunks (4 KiB) keep files multi-chunk while call counts stay low.
"""

import hashlib
import os
import threading
from unittest import mock
import uuid

import fixtures
from oslotest import base as test_base

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog import import_ledger
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures


class TestPull(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(test_fixtures.Hosts())
        self.uuid = str(uuid.uuid4())
        self.files = test_fixtures.sample_chain()
        self.src = self.hosts.start('src')
        test_fixtures.write_chain(self.src, self.uuid, self.files)
        self.conf, self.rpcapi = self.hosts.client(
            'dst', pull_retries=2, pull_window=4)
        self.chain = cl_chain.ConsoleLogChain.for_instance(self.uuid,
                                                           conf=self.conf)
        os.makedirs(self.chain.directory)

    def history(self):
        names = [f.name for f in self.chain.history()]
        return b''.join(open(os.path.join(self.chain.directory, n),
                             'rb').read() for n in names)

    def leftovers(self):
        return [n for n in os.listdir(self.chain.directory)
                if n.startswith(cl_chain.PARTIAL_PREFIX)]

    def test_pull_is_byte_exact(self):
        seen = []
        result = transfer.pull(self.conf, self.rpcapi, 'src', self.uuid,
                               chain=self.chain,
                               progress=lambda d, t: seen.append((d, t)))
        expected = test_fixtures.chain_bytes(self.files)
        self.assertEqual(expected, self.history())
        self.assertEqual(len(expected), result.bytes)
        self.assertEqual(4, result.files)
        # Text compresses: fewer bytes travel than were pulled.
        self.assertLess(result.wire_bytes, result.bytes)
        self.assertEqual([], self.leftovers())
        self.assertEqual((len(expected), len(expected)), seen[-1])
        self.assertEqual(sorted(seen), seen)
        # The live chain was pulled from a pin, released afterwards; the
        # live chain itself is untouched.
        self.assertTrue(result.released)
        self.assertTrue(result.stash_id.startswith(cl_stash.PIN_PREFIX))
        self.assertEqual([], cl_stash.Stash.list(
            root=cl_stash.pin_root(self.src.consolelog.stash_path),
            conf=self.src))
        src = cl_chain.ConsoleLogChain.for_instance(self.uuid, conf=self.src)
        self.assertEqual(expected, src.read_tail(10 ** 6))
        # The merged read now starts with the imported chain.
        self.assertEqual(expected[-1000:], self.chain.read_tail(1000))

    def test_corrupted_chunk_is_fetched_again(self):
        api = test_fixtures.FaultyAPI(
            self.rpcapi, {('console.log.1', 4096): test_fixtures.corrupt})
        result = transfer.pull(self.conf, api, 'src', self.uuid,
                               chain=self.chain)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        # The block holding the damaged chunk failed its check on disk and
        # was read again (the whole file: it is one block).
        self.assertEqual(2, api.calls[('console.log.1', 4096)])
        self.assertEqual(2, api.calls[('console.log.1', 0)])
        self.assertEqual(1, api.calls[('console.log.0', 0)])
        self.assertEqual('console.history.000001', result.installed)

    def test_timeout_is_retried(self):
        api = test_fixtures.FaultyAPI(
            self.rpcapi, {('console.log.0', 8192): test_fixtures.time_out})
        transfer.pull(self.conf, api, 'src', self.uuid, chain=self.chain)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        self.assertEqual(2, api.calls[('console.log.0', 8192)])

    def _stash_on_source(self, files=None):
        src_dir = cl_chain.ConsoleLogChain.for_instance(
            self.uuid, conf=self.src).directory
        return cl_stash.Stash.create(
            self.uuid, cl_chain.ConsoleLogChain(src_dir, conf=self.src),
            root=self.src.consolelog.stash_path, conf=self.src)

    def _pull_gives_up(self):
        """A stash pull whose third file keeps timing out: it fails.

        Returns the stash and the faulty client.
        """
        stash = self._stash_on_source()
        api = test_fixtures.FaultyAPI(
            self.rpcapi, {('console.log.0', 8192): test_fixtures.time_out},
            times=10)
        self.assertRaises(exception.TransferFailed, transfer.pull,
                          self.conf, api, 'src', self.uuid,
                          stash_id=stash.stash_id, chain=self.chain)
        return stash, api

    def test_gives_up_then_resumes(self):
        stash, api = self._pull_gives_up()
        self.assertEqual(3, api.calls[('console.log.0', 8192)])
        self.assertEqual(b'', self.history())
        # The files before the faulty one are written and kept: a new pull
        # fetches only the rest, and checks all of it on disk.
        api = test_fixtures.FaultyAPI(self.rpcapi)
        result = transfer.pull(self.conf, api, 'src', self.uuid,
                               stash_id=stash.stash_id, chain=self.chain)
        expected = test_fixtures.chain_bytes(self.files)
        self.assertEqual(expected, self.history())
        already = (len(self.files['console.history.000001']) +
                   len(self.files['console.log.1']))
        self.assertEqual(len(expected) - already, result.bytes)
        self.assertEqual(0, api.calls[('console.log.1', 0)])
        self.assertEqual([], self.leftovers())
        self.assertTrue(result.released)

    def test_resumed_part_changed_on_disk_is_fetched_again(self):
        """A byte of the resumed part that changed is never installed."""
        stash, _api = self._pull_gives_up()
        staging = os.path.join(self.chain.directory, self.leftovers()[0])
        with open(staging, 'r+b') as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xff]))
        api = test_fixtures.FaultyAPI(self.rpcapi)
        transfer.pull(self.conf, api, 'src', self.uuid,
                      stash_id=stash.stash_id, chain=self.chain)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        self.assertEqual(1, api.calls[('console.history.000001', 0)])

    def test_stash_changed_after_it_was_made_is_never_installed(self):
        stash = self._stash_on_source()
        path = os.path.join(stash.path, 'console.log.1')
        with open(path, 'r+b') as f:
            f.write(b'X')
        self.assertRaises(exception.TransferFailed, transfer.pull,
                          self.conf, self.rpcapi, 'src', self.uuid,
                          stash_id=stash.stash_id, chain=self.chain)
        self.assertEqual(b'', self.history())
        # The stash stays on the source.
        cl_stash.Stash.load(self.uuid, stash.stash_id,
                            root=self.src.consolelog.stash_path,
                            conf=self.src)

    def test_live_chain_rotated_during_pull_is_pinned(self):
        """virtlogd rolling over mid-pull never splices two files."""
        src_dir = cl_chain.ConsoleLogChain.for_instance(
            self.uuid, conf=self.src).directory
        real = self.rpcapi.read_chunk
        rotated = []

        def read_chunk(*args, **kwargs):
            if not rotated:
                rotated.append(True)
                os.rename(os.path.join(src_dir, 'console.log.1'),
                          os.path.join(src_dir, 'console.log.2'))
                os.rename(os.path.join(src_dir, 'console.log.0'),
                          os.path.join(src_dir, 'console.log.1'))
                os.rename(os.path.join(src_dir, 'console.log'),
                          os.path.join(src_dir, 'console.log.0'))
                with open(os.path.join(src_dir, 'console.log'), 'wb') as f:
                    f.write(b'a new file, much longer than the old one' *
                            1000)
            return real(*args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(self.rpcapi, 'read_chunk',
                                                 read_chunk))
        transfer.pull(self.conf, self.rpcapi, 'src', self.uuid,
                      chain=self.chain)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())

    def test_two_pulls_of_one_stash_at_once_install_it_once(self):
        stash = self._stash_on_source()
        results, errors = [], []

        def pull():
            try:
                results.append(transfer.pull(
                    self.conf, self.rpcapi, 'src', self.uuid,
                    stash_id=stash.stash_id, chain=self.chain))
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=pull) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([], errors)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        self.assertEqual(1, len(self.chain.history()))
        # One fetched the bytes, the other found them installed.
        self.assertEqual(
            sorted([0, len(test_fixtures.chain_bytes(self.files))]),
            sorted(r.bytes for r in results))
        self.assertEqual([], self.leftovers())
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          self.uuid, stash.stash_id,
                          root=self.src.consolelog.stash_path,
                          conf=self.src)

    def test_crash_between_ledger_and_rename_resumes_the_install(self):
        stash = self._stash_on_source()
        real_rename = os.rename
        crashed = []

        def rename(src, dst, *args, **kwargs):
            # The install's rename (staging file to history), not the
            # atomic replace of a state file.
            if os.path.basename(dst).startswith('console.history.0') and \
                    not crashed:
                crashed.append(src)
                raise KeyboardInterrupt('power cut')
            return real_rename(src, dst, *args, **kwargs)
        with mock.patch.object(os, 'rename', rename):
            self.assertRaises(KeyboardInterrupt, transfer.pull, self.conf,
                              self.rpcapi, 'src', self.uuid,
                              stash_id=stash.stash_id, chain=self.chain)
        self.assertEqual(b'', self.history())
        # The ledger names the import, but the staging file is still there
        # under its inode: the next pull installs it, fetching nothing.
        self.assertIn(transfer.import_id_for('src', stash.stash_id),
                      import_ledger.Ledger(self.chain).load())
        again = transfer.pull(self.conf, self.rpcapi, 'src', self.uuid,
                              stash_id=stash.stash_id, chain=self.chain)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        self.assertEqual(1, len(self.chain.history()))
        self.assertEqual(0, again.bytes)
        self.assertTrue(again.released)

    def test_second_run_after_install_only_releases(self):
        stash = self._stash_on_source()
        first = transfer.pull(self.conf, self.rpcapi, 'src', self.uuid,
                              stash_id=stash.stash_id, chain=self.chain,
                              release=False)
        again = transfer.pull(self.conf, self.rpcapi, 'src', self.uuid,
                              stash_id=stash.stash_id, chain=self.chain)
        self.assertEqual(0, again.bytes)
        self.assertEqual(first.installed, again.installed)
        self.assertTrue(again.released)
        self.assertEqual(test_fixtures.chain_bytes(self.files), self.history())
        self.assertEqual(1, len(self.chain.history()))

    def test_unknown_instance_is_typed(self):
        other = str(uuid.uuid4())
        chain = cl_chain.ConsoleLogChain.for_instance(other, conf=self.conf)
        os.makedirs(chain.directory)
        self.assertRaises(exception.InstanceDirNotFound, transfer.pull,
                          self.conf, self.rpcapi, 'src', other, chain=chain)

    def test_peer_without_the_rpc(self):
        self.hosts.start('broken',
                         endpoint_cls=test_fixtures.ManagerWithoutStashes)
        test_fixtures.write_chain(self.hosts.conf('broken'), self.uuid,
                                  self.files)
        self.assertRaises(exception.PeerUnsupported, transfer.pull,
                          self.conf, self.rpcapi, 'broken', self.uuid,
                          chain=self.chain)
        self.assertEqual(b'', self.history())

    def test_stash_is_released_after_verified_install(self):
        other = str(uuid.uuid4())
        files = {'console.log.0': os.urandom(5000),
                 'console.log': b'last line\n'}
        src_dir = test_fixtures.write_chain(self.src, other, files)
        stash = cl_stash.Stash.create(
            other, cl_chain.ConsoleLogChain(src_dir, conf=self.src),
            root=self.src.consolelog.stash_path,
            conf=self.src)
        chain = cl_chain.ConsoleLogChain.for_instance(other, conf=self.conf)
        os.makedirs(chain.directory)
        result = transfer.pull(self.conf, self.rpcapi, 'src', other,
                               stash_id=stash.stash_id, chain=chain)
        self.assertTrue(result.released)
        # What a later release of the stash would send (release=False): the
        # roots of the hash lists.
        self.assertEqual({n: hashlist.root(len(d), hashlist.BLOCK_SIZE,
                                           [hashlib.sha256(d).hexdigest()])
                          for n, d in files.items()}, result.sha256s)
        self.assertEqual(files['console.log.0'] + files['console.log'],
                         chain.read_tail(100000))
        self.assertRaises(exception.StashNotFound, cl_stash.Stash.load,
                          other, stash.stash_id,
                          root=self.src.consolelog.stash_path,
                          conf=self.src)

    def test_empty_stash_installs_nothing_and_is_released(self):
        other = str(uuid.uuid4())
        src_dir = test_fixtures.write_chain(self.src, other,
                                            {'console.log': b''})
        stash = cl_stash.Stash.create(
            other, cl_chain.ConsoleLogChain(src_dir, conf=self.src),
            root=self.src.consolelog.stash_path, conf=self.src)
        chain = cl_chain.ConsoleLogChain.for_instance(other, conf=self.conf)
        os.makedirs(chain.directory)
        result = transfer.pull(self.conf, self.rpcapi, 'src', other,
                               stash_id=stash.stash_id, chain=chain)
        self.assertEqual((0, 1, True), (result.bytes, result.files,
                                        result.released))
        self.assertEqual([], os.listdir(chain.directory))

    def test_import_id_is_stable_and_valid(self):
        a = transfer.import_id_for('host-1.example.org', 'abc')
        self.assertEqual(a, transfer.import_id_for('host-1.example.org',
                                                   'abc'))
        self.assertNotEqual(a, transfer.import_id_for('host-1', 'abc'))
        self.assertRegex(a, cl_chain.IMPORT_ID_RE.pattern)
        self.assertEqual(
            hashlib.sha256(b'h\0').hexdigest()[:40],
            transfer.import_id_for('h', None)[len('pull-'):])
