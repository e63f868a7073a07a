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

"""Pulls between two processes over a real RabbitMQ, with real faults.

The source host is a ``nova-consolelog serve`` process; this process is
the destination. Faults are real where a peer can produce them (a killed
or stopped process, a broker restart, a full disk); a chunk damaged in
flight is injected by wrapping the client.
"""

import os
import subprocess
import threading
import time
import uuid

from nova_consolelog import exception
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import pulls

MiB = pulls.MiB


class TestPull(pulls.PullTestCase):

    def test_multi_file_binary_pull(self):
        files = {'console.history.000003': pulls.random_bytes(MiB, 1),
                 'console.log.1': pulls.random_bytes(2 * MiB + 7, 2),
                 'console.log.0': pulls.text_bytes(2 * MiB, 3),
                 'console.log': bytes(range(256)) * 1000}
        instance, stash_id = self.make_source(files, chunk_size=MiB)
        # The chunk path (RPC 1.1), compressed; test_bulk pulls over the
        # bulk channel.
        conf, rpcapi = self.client(chunk_size=256 * 1024,
                                   bulk_transfer=False)
        result, chain = self.pull_exact(conf, rpcapi, instance, stash_id,
                                        files)
        expected = test_fixtures.chain_bytes(files)
        self.assertEqual(len(expected), result.bytes)
        self.assertTrue(result.released)
        self.assertLess(result.wire_bytes, result.bytes)
        self.assertEqual([], cl_stash.Stash.list(
            instance, root=self.src.conf.consolelog.stash_path,
            conf=self.src.conf))
        self.assertEqual([], self.partials(chain))

    def test_twenty_pulls_at_once(self):
        self.src = self.start_host('src', chunk_size=64 * 1024)
        conf, rpcapi = self.client(chunk_size=64 * 1024)
        jobs = {}
        for i in range(20):
            instance = str(uuid.uuid4())
            files = {'console.log.0': pulls.random_bytes(200 * 1024 + i, i),
                     'console.log': pulls.text_bytes(100 * 1024, i)}
            test_fixtures.write_chain(self.src.conf, instance, files)
            jobs[instance] = (files, self.dest_chain(conf, instance))
        errors = []

        def one(instance):
            try:
                transfer.pull(conf, rpcapi, 'src', instance,
                              chain=jobs[instance][1])
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual([], errors)
        for instance, (files, chain) in jobs.items():
            self.assertEqual(test_fixtures.chain_bytes(files),
                             self.history(chain))

    def test_corrupted_in_flight(self):
        files = {'console.log.0': pulls.random_bytes(600 * 1024, 5),
                 'console.log': pulls.text_bytes(10000)}
        instance, stash_id = self.make_source(files)
        # The chunk path (RPC 1.1); test_bulk damages bulk messages.
        conf, rpcapi = self.client(chunk_size=128 * 1024,
                                   bulk_transfer=False)
        api = test_fixtures.FaultyAPI(rpcapi, {
            ('console.log.0', 256 * 1024): test_fixtures.corrupt,
            ('console.log', 0): test_fixtures.corrupt})
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance, stash_id=stash_id,
                               chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        self.assertEqual(2, api.calls[('console.log.0', 256 * 1024)])
        self.assertEqual(2, api.calls[('console.log', 0)])
        self.assertTrue(result.released)

    def test_destination_out_of_disk(self):
        if os.geteuid() != 0:
            self.fail('mounting a tmpfs needs root: run the functional '
                      'tests as root')
        files = {'console.log.0': pulls.random_bytes(3 * MiB, 6),
                 'console.log': pulls.random_bytes(MiB, 7)}
        instance, stash_id = self.make_source(files, chunk_size=MiB)
        mount = os.path.join(self.root, 'small')
        os.makedirs(mount)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs',
                        mount], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', mount], check=False)
        conf, rpcapi = self.client(instances_path=mount,
                                   chunk_size=256 * 1024)
        chain = self.dest_chain(conf, instance)
        earlier = b'earlier history\n' * 1000
        with open(os.path.join(chain.directory,
                               'console.history.000001'), 'wb') as f:
            f.write(earlier)
        self.assertRaises(exception.InstallFailed, transfer.pull, conf,
                          rpcapi, 'src', instance, stash_id=stash_id,
                          chain=chain)
        self.assertEqual(['console.history.000001'],
                         sorted(os.listdir(chain.directory)))
        self.assertEqual(earlier, self.history(chain))
        # Nothing was released: the source still has every byte.
        self.assertEqual([stash_id], [s.stash_id for s in cl_stash.Stash.list(
            instance, root=self.src.conf.consolelog.stash_path,
            conf=self.src.conf)])


class TestFaults(pulls.PullTestCase):
    """A source that dies, stalls, or loses its broker during a pull."""

    FILES = pulls.FAULT_FILES

    def test_source_killed_and_restarted_resumes(self):
        instance, stash_id = self.make_source(self.FILES, chunk_size=MiB)
        conf, rpcapi = self.client(chunk_size=256 * 1024, rpc_timeout=2,
                                   pull_retries=1)
        chain = self.dest_chain(conf, instance)
        self.pull_killed_at(conf, rpcapi, instance, stash_id, chain, 6 * MiB)
        self.src.start()
        result = transfer.pull(conf, rpcapi, 'src', instance,
                               stash_id=stash_id, chain=chain)
        total = sum(len(d) for d in self.FILES.values())
        self.assertLessEqual(result.bytes, total - 4 * MiB)
        self.assertEqual(test_fixtures.chain_bytes(self.FILES),
                         self.history(chain))
        self.assertTrue(result.released)

    def test_rpc_timeout(self):
        instance, stash_id = self.make_source(self.FILES, chunk_size=MiB)
        conf, rpcapi = self.client(rpc_timeout=1, pull_retries=1,
                                   chunk_size=MiB)
        chain = self.dest_chain(conf, instance)
        self.src.pause()
        self.addCleanup(self.src.resume)
        started = time.monotonic()
        self.assertRaises(exception.TransferFailed, transfer.pull, conf,
                          rpcapi, 'src', instance, stash_id=stash_id,
                          chain=chain)
        self.assertLess(time.monotonic() - started, 30)
        self.src.resume()
        conf, rpcapi = self.client(rpc_timeout=10, chunk_size=MiB)
        transfer.pull(conf, rpcapi, 'src', instance, stash_id=stash_id,
                      chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(self.FILES),
                         self.history(chain))

    def test_rabbitmq_restarted_mid_pull(self):
        instance, stash_id = self.make_source(self.FILES, chunk_size=MiB)
        # The chunk path (RPC 1.1): its calls must live through the
        # restart; test_bulk restarts the broker under a bulk pull.
        conf, rpcapi = self.client(chunk_size=256 * 1024, rpc_timeout=5,
                                   pull_retries=8, pull_timeout=180,
                                   bulk_transfer=False)
        chain = self.dest_chain(conf, instance)
        restart = pulls.BrokerRestart(self, self.src, at=2 * MiB)
        transfer.pull(conf, rpcapi, 'src', instance, stash_id=stash_id,
                      chain=chain, progress=restart.progress)
        restart.join()
        self.assertTrue(restart.restarted.is_set())
        # Most of the chain came through the restarted broker. (Whether a
        # call in flight fails depends on whether its request had reached
        # the paused source's socket: oslo.messaging delivers the replies
        # of those that had, after the restart.)
        self.assertLess(restart.done_when_back,
                        sum(len(d) for d in self.FILES.values()))
        self.assertEqual(test_fixtures.chain_bytes(self.FILES),
                         self.history(chain))
