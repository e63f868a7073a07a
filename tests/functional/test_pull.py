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
import random
import subprocess
import threading
import time
import uuid

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import base

MiB = 1024 * 1024


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def text_bytes(n, seed=0):
    lines = []
    size = 0
    i = 0
    while size < n:
        line = b'[%10.6f] seed %d line %d: systemd[1]: Started unit.\r\n' % (
            i / 1000.0, seed, i)
        lines.append(line)
        size += len(line)
        i += 1
    return b''.join(lines)[:n]


class BrokerRestart:
    """Restart RabbitMQ under a pull once it has moved ``at`` bytes.

    Use ``progress`` as the pull's progress callback. The source is paused
    while the broker is away, so that requests are in flight across the
    restart however fast the source and the broker are; the pull goes on
    only once the broker is away, so the rest of it has to live through
    the restart. ``done_when_back`` is what the pull had when the broker
    was back: less than all proves the rest went through the new broker.
    """

    def __init__(self, test, source, at):
        self.source = source
        self.at = at
        self.done = 0
        self.done_when_back = None
        self.stopped = threading.Event()
        self.restarted = threading.Event()
        self.thread = None
        test.addCleanup(subprocess.run, ['rabbitmqctl', 'start_app'],
                        capture_output=True, check=False)

    def progress(self, done, total):
        self.done = done
        if done >= self.at and self.thread is None:
            self.thread = threading.Thread(target=self._bounce)
            self.thread.start()
            self.stopped.wait(60)

    def _bounce(self):
        self.source.pause()
        subprocess.run(['rabbitmqctl', 'stop_app'], capture_output=True,
                       check=True)
        self.stopped.set()
        time.sleep(1)
        subprocess.run(['rabbitmqctl', 'start_app'], capture_output=True,
                       check=True)
        self.done_when_back = self.done
        self.source.resume()
        self.restarted.set()

    def join(self):
        self.thread.join(60)


class PullTestCase(base.FunctionalTestCase):

    def make_source(self, files, host='src', stash=True, **overrides):
        self.src = self.start_host(host, **overrides)
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(self.src.conf, instance, files)
        stash_id = None
        if stash:
            stash_id = cl_stash.Stash.create(
                instance, cl_chain.ConsoleLogChain(directory,
                                                   conf=self.src.conf),
                root=self.src.conf.consolelog.stash_path,
                conf=self.src.conf).stash_id
        return instance, stash_id

    def dest_chain(self, conf, instance):
        chain = cl_chain.ConsoleLogChain.for_instance(instance, conf=conf)
        os.makedirs(chain.directory, exist_ok=True)
        return chain

    def pull_exact(self, conf, api, instance, stash_id, files, **kwargs):
        """Pull into a new destination chain; assert it is byte-exact.

        Returns the PullResult and the chain.
        """
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance, stash_id=stash_id,
                               chain=chain, **kwargs)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        return result, chain

    def pull_killed_at(self, conf, rpcapi, instance, stash_id, chain, at):
        """A pull whose source is killed once ``at`` bytes are in.

        The pull fails and installs nothing; the source stays down (the
        caller restarts it).
        """
        def kill(done, total):
            if done >= at:
                self.src.kill()
        self.assertRaises(exception.TransferFailed, transfer.pull, conf,
                          rpcapi, 'src', instance, stash_id=stash_id,
                          chain=chain, progress=kill)
        self.assertEqual(b'', self.history(chain))

    def history(self, chain):
        return b''.join(
            open(os.path.join(chain.directory, f.name), 'rb').read()
            for f in chain.history())

    def partials(self, chain):
        return [n for n in os.listdir(chain.directory)
                if n.startswith(cl_chain.PARTIAL_PREFIX)]


class TestPull(PullTestCase):

    def test_multi_file_binary_pull(self):
        files = {'console.history.000003': random_bytes(MiB, 1),
                 'console.log.1': random_bytes(2 * MiB + 7, 2),
                 'console.log.0': text_bytes(2 * MiB, 3),
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
            files = {'console.log.0': random_bytes(200 * 1024 + i, i),
                     'console.log': text_bytes(100 * 1024, i)}
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
        files = {'console.log.0': random_bytes(600 * 1024, 5),
                 'console.log': text_bytes(10000)}
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
        files = {'console.log.0': random_bytes(3 * MiB, 6),
                 'console.log': random_bytes(MiB, 7)}
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


class TestFaults(PullTestCase):
    """A source that dies, stalls, or loses its broker during a pull."""

    FILES = {'console.log.2': random_bytes(4 * MiB, 11),
             'console.log.1': random_bytes(4 * MiB, 12),
             'console.log.0': random_bytes(4 * MiB, 13),
             'console.log': random_bytes(4 * MiB, 14)}

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
        restart = BrokerRestart(self, self.src, at=2 * MiB)
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
