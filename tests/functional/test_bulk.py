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

"""Pulls over the bulk channel (RPC 1.2) on the real RabbitMQ.

The source is a ``nova-consolelog serve`` process (or a peer of an older
release); this process pulls. A chunk damaged in flight is injected by
wrapping the destination's decoder; everything else is real.
"""

import hashlib
import os
import socket
import subprocess
import threading
import time
import uuid

import amqp.exceptions
import fixtures
import kombu

from nova_consolelog import chain as cl_chain
from nova_consolelog import history_import
from nova_consolelog.rpc import broker
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import bulk_receiver
from nova_consolelog.rpc import frames
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer
from nova_consolelog.transfer import bulk_path

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import pulls

MiB = pulls.MiB
random_bytes = pulls.random_bytes
text_bytes = pulls.text_bytes


class RangeCounter(test_fixtures.FaultyAPI):
    """The real client, counting chunk reads and bulk window calls."""

    def __init__(self, api, faults=None):
        super().__init__(api, faults)
        self.windows = []

    def send_range(self, ctxt, host, instance_uuid, name, offset, length,
                   reply_queue, **kwargs):
        with self.lock:
            self.windows.append((name, offset, length))
        return self.api.send_range(ctxt, host, instance_uuid, name, offset,
                                   length, reply_queue, **kwargs)


class TLSBroker(fixtures.Fixture):
    """The local RabbitMQ behind a TLS listener of its own.

    socat terminates TLS (a throw-away self-signed certificate for
    ``localhost``) and forwards to 127.0.0.1:5672, so that clients speak
    real TLS, with the certificate and host name checked, while the shared
    broker keeps its plain listener. ``url`` is an oslo.messaging
    transport URL that asks for TLS in its query, the way operators may.
    """

    def _setUp(self):
        directory = self.useFixture(fixtures.TempDir()).path
        self.ca_file = os.path.join(directory, 'cert.pem')
        key_file = os.path.join(directory, 'key.pem')
        for tool in ('openssl', 'socat'):
            if subprocess.run(['which', tool], capture_output=True).returncode:
                raise AssertionError(
                    '%s is needed for the TLS test: tools/setup-host.sh '
                    'functional (as root) installs it' % tool)
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
             '-days', '1', '-subj', '/CN=localhost', '-addext',
             'subjectAltName=DNS:localhost', '-keyout', key_file, '-out',
             self.ca_file], capture_output=True, check=True)
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            self.port = probe.getsockname()[1]
        proxy = subprocess.Popen(
            ['socat', 'OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,'
             'cert=%s,key=%s,verify=0' % (self.port, self.ca_file, key_file),
             'TCP:127.0.0.1:5672'], stderr=subprocess.PIPE)
        self.addCleanup(proxy.wait)
        self.addCleanup(proxy.kill)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise AssertionError('socat did not listen on %d' %
                                         self.port)
                time.sleep(0.05)
        self.url = ('rabbit://guest:guest@localhost:%d/?ssl=1&ssl_ca_file=%s'
                    % (self.port, self.ca_file))


class BulkTestCase(pulls.PullTestCase):

    def setUp(self):
        super().setUp()
        self.queues = []
        real = cl_bulk.new_queue_name

        def recording():
            name = real()
            self.queues.append(name)
            return name
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.bulk.new_queue_name', recording))

    def assertQueuesGone(self):
        """Every bulk queue this test declared is gone from the broker."""
        self.assertNotEqual([], self.queues)
        url = broker.kombu_url(test_fixtures.make_conf(self.root, 'probe',
                                                       self.topic),
                               base.TRANSPORT_URL)
        with kombu.Connection(url) as conn:
            for name in self.queues:
                channel = conn.channel()
                try:
                    self.assertRaises(amqp.exceptions.NotFound,
                                      channel.queue_declare, name,
                                      passive=True)
                finally:
                    if channel.is_open:
                        channel.close()

    def files(self):
        return {'console.history.000003': random_bytes(MiB + 5, 1),
                'console.log.1': random_bytes(3 * MiB + 7, 2),
                'console.log.0': text_bytes(2 * MiB, 3),
                'console.log': bytes(range(256)) * 1000}


class TestBulkPull(BulkTestCase):

    def test_multi_file_binary_pull(self):
        files = self.files()
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_window=2 * MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=2 * MiB)
        api = RangeCounter(rpcapi)
        result, chain = self.pull_exact(conf, api, instance, stash_id, files)
        expected = test_fixtures.chain_bytes(files)
        self.assertEqual(len(expected), result.bytes)
        # Every byte came over the bulk channel, none by chunk call.
        self.assertEqual(len(expected), result.bulk_bytes)
        self.assertEqual({}, dict(api.calls))
        # One window per 2 MiB of each file.
        self.assertEqual(5, len(api.windows))
        # Raw bytes by default (bulk_compression is off).
        self.assertEqual(result.bytes, result.wire_bytes)
        self.assertTrue(result.released)
        self.assertEqual([], self.partials(chain))
        self.assertQueuesGone()

    def test_compressed_pull(self):
        files = self.files()
        instance, stash_id = self.make_source(files, chunk_size=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_compression=True)
        api = RangeCounter(rpcapi)
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance,
                               stash_id=stash_id, chain=chain)
        expected = test_fixtures.chain_bytes(files)
        self.assertEqual(expected, self.history(chain))
        self.assertEqual(len(expected), result.bulk_bytes)
        self.assertEqual({}, dict(api.calls))
        # The text files shrank; the random ones went as they are.
        text = len(files['console.log.0'])
        self.assertLess(result.wire_bytes, result.bytes - text // 2)
        self.assertGreaterEqual(result.wire_bytes, sum(
            len(files[n]) for n in ('console.history.000003',
                                    'console.log.1')))
        self.assertQueuesGone()

    def test_source_window_smaller_than_ours(self):
        files = {'console.log.0': random_bytes(3 * MiB, 4),
                 'console.log': text_bytes(MiB, 5)}
        instance, stash_id = self.make_source(files, chunk_size=256 * 1024,
                                              bulk_window=512 * 1024)
        conf, rpcapi = self.client(chunk_size=256 * 1024,
                                   bulk_window=4 * MiB)
        api = RangeCounter(rpcapi)
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance,
                               stash_id=stash_id, chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        self.assertEqual({}, dict(api.calls))
        self.assertEqual(4 * MiB, result.bulk_bytes)
        # The source cut each window to its 512 KiB; we asked for the rest.
        self.assertEqual(8, len(api.windows))
        self.assertQueuesGone()

    def test_next_window_asked_while_the_last_is_still_written(self):
        # A window whose bytes all arrived no longer holds a place in
        # flight: writing them (a slow disk here) does not keep the next
        # one from being asked for; every byte is still checked on disk.
        files = {'console.log.1': random_bytes(MiB, 20),
                 'console.log.0': random_bytes(MiB, 21),
                 'console.log': random_bytes(MiB, 22),
                 'console.history.000001': random_bytes(MiB, 23)}
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_window=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB)
        events = []
        lock = threading.Lock()

        class Recorder(RangeCounter):
            def send_range(self, ctxt, host, instance_uuid, name, *args,
                           **kwargs):
                with lock:
                    events.append(('asked', name))
                return super().send_range(ctxt, host, instance_uuid, name,
                                          *args, **kwargs)
        real_write = history_import.Import.write

        def slow_write(imp, name, offset, data):
            time.sleep(0.3)
            real_write(imp, name, offset, data)
            with lock:
                events.append(('written', name))
        self.useFixture(fixtures.MockPatchObject(
            history_import.Import, 'write', slow_write))
        api = Recorder(rpcapi)
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance,
                               stash_id=stash_id, chain=chain)
        got, want = self.history(chain), test_fixtures.chain_bytes(files)
        self.assertEqual((len(want), hashlib.sha256(want).hexdigest()),
                         (len(got), hashlib.sha256(got).hexdigest()))
        self.assertEqual(4 * MiB, result.bulk_bytes)
        self.assertTrue(result.released)
        self.assertEqual(4, len(api.windows))
        asked = [name for what, name in events if what == 'asked']
        third = events.index(('asked', asked[2]))
        first_written = events.index(('written', asked[0]))
        self.assertLess(third, first_written, events)
        self.assertQueuesGone()

    def test_corrupted_bulk_chunk_is_read_again(self):
        files = self.files()
        instance, stash_id = self.make_source(files, chunk_size=MiB)
        conf, rpcapi = self.client(chunk_size=MiB)
        api = RangeCounter(rpcapi)
        damaged = {('console.log.1', 2 * MiB), ('console.log.0', 0)}
        real = frames.decode_chunk

        def damaging(headers, body):
            name, offset, raw, sha256, eof = real(headers, body)
            if (name, offset) in damaged:
                damaged.discard((name, offset))
                raw = bytearray(raw)
                raw[len(raw) // 2] ^= 0xff
                raw = bytes(raw)
            return name, offset, raw, sha256, eof
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.frames.decode_chunk', damaging))
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance,
                               stash_id=stash_id, chain=chain)
        self.assertEqual(set(), damaged)
        expected = test_fixtures.chain_bytes(files)
        self.assertEqual(expected, self.history(chain))
        # Exactly the two blocks holding the damaged chunks failed their
        # check on disk and were read again by chunk call.
        self.assertEqual({('console.log.1', 2 * MiB): 1,
                          ('console.log.0', 0): 1}, dict(api.calls))
        self.assertEqual(len(expected), result.bulk_bytes)
        self.assertTrue(result.released)
        self.assertQueuesGone()

    def test_peer_of_release_1_1_gets_chunk_calls(self):
        files = self.files()
        self.src = self.start_host('src', script='v1.1', chunk_size=MiB)
        instance = uuid.uuid4().hex
        instance = str(uuid.UUID(instance))
        test_fixtures.write_chain(self.src.conf, instance, files)
        conf, rpcapi = self.client(chunk_size=MiB)
        self.assertTrue(rpcapi.bulk_supported('src'))
        api = RangeCounter(rpcapi)
        asked = []
        for attempt in range(2):
            directory = os.path.join(self.root, 'pull-%d' % attempt)
            os.makedirs(directory)
            chain = cl_chain.ConsoleLogChain(directory, instance=instance,
                                             conf=conf)
            # A 1.1 source cannot pin its live chain: pull a stash of it.
            test_fixtures.write_chain(self.src.conf, instance, files)
            stash_id = cl_stash.Stash.create(
                instance, cl_chain.ConsoleLogChain.for_instance(
                    instance, conf=self.src.conf),
                root=self.src.conf.consolelog.stash_path,
                conf=self.src.conf).stash_id
            result = transfer.pull(conf, api, 'src', instance,
                                   stash_id=stash_id, chain=chain)
            self.assertEqual(test_fixtures.chain_bytes(files),
                             self.history(chain))
            self.assertEqual(sum(len(d) for d in files.values()),
                             result.bytes)
            self.assertEqual(0, result.bulk_bytes)
            asked.append(len(api.windows))
        # The windows in flight were refused by version; the peer is then
        # known as pre-1.2 and not asked again.
        self.assertIn(asked[0], (1, bulk_path.BULK_WINDOWS))
        self.assertEqual(asked[0], asked[1])
        self.assertFalse(rpcapi.bulk_supported('src'))
        self.assertGreater(sum(api.calls.values()), 0)

    def test_source_with_bulk_off_gets_chunk_calls(self):
        files = self.files()
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_transfer=False)
        conf, rpcapi = self.client(chunk_size=MiB)
        api = RangeCounter(rpcapi)
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance,
                               stash_id=stash_id, chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        self.assertEqual(0, result.bulk_bytes)
        self.assertIn(len(api.windows), (1, bulk_path.BULK_WINDOWS))
        self.assertTrue(result.released)
        self.assertQueuesGone()

    def test_pull_over_tls(self):
        # The bulk channel takes the TLS settings of the transport: with a
        # plain connection to a TLS port it would fail and every byte would
        # come by chunk call.
        tls = self.useFixture(TLSBroker())
        files = self.files()
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              transport_url=tls.url)
        conf, rpcapi = self.client(chunk_size=MiB, transport_url=tls.url)
        self.assertEqual('amqp://guest:guest@localhost:%d/%%2F' % tls.port,
                         rpcapi.bulk_url)
        self.assertEqual(tls.ca_file, rpcapi.bulk_ssl['ca_certs'])
        result, chain = self.pull_exact(conf, rpcapi, instance, stash_id,
                                        files)
        self.assertEqual(len(test_fixtures.chain_bytes(files)),
                         result.bulk_bytes)
        self.assertTrue(result.released)

    def test_failed_pull_leaves_no_queue(self):
        files = pulls.FAULT_FILES
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_window=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB,
                                   rpc_timeout=2, pull_retries=1)
        chain = self.dest_chain(conf, instance)
        self.pull_killed_at(conf, rpcapi, instance, stash_id, chain, 6 * MiB)
        self.assertQueuesGone()
        # The verified part stays: the next pull resumes over bulk.
        self.src.start()
        result = transfer.pull(conf, rpcapi, 'src', instance,
                               stash_id=stash_id, chain=chain)
        self.assertLessEqual(result.bytes, 12 * MiB)
        self.assertEqual(result.bytes, result.bulk_bytes)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        self.assertQueuesGone()


class TestBulkConnections(BulkTestCase):
    """The destination's bulk connection, kept across pulls."""

    def pool(self, rpcapi):
        return bulk_receiver.receiver_pool_for(rpcapi.bulk_url,
                                               rpcapi.bulk_ssl)

    def stash(self, files):
        test_fixtures.write_chain(self.src.conf, self.instance, files)
        return cl_stash.Stash.create(
            self.instance, cl_chain.ConsoleLogChain.for_instance(
                self.instance, conf=self.src.conf),
            root=self.src.conf.consolelog.stash_path,
            conf=self.src.conf).stash_id

    def counts(self, pool):
        return pool.created, pool.reused, pool.discarded

    def pull_again(self, conf, rpcapi, stash_id, files):
        """Pull ``stash_id`` into a chain of its own; assert byte-exact."""
        directory = os.path.join(self.root, 'again-%s' % stash_id)
        os.makedirs(directory)
        chain = cl_chain.ConsoleLogChain(directory, instance=self.instance,
                                         conf=conf)
        result = transfer.pull(conf, rpcapi, 'src', self.instance,
                               stash_id=stash_id, chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        return result

    def test_pulls_of_a_process_share_a_connection(self):
        files = self.files()
        self.instance, first = self.make_source(files, chunk_size=MiB)
        conf, rpcapi = self.client(chunk_size=MiB)
        pool = self.pool(rpcapi)
        pool.close()
        before = self.counts(pool)
        total = len(test_fixtures.chain_bytes(files))
        result, _ = self.pull_exact(conf, rpcapi, self.instance, first,
                                    files)
        self.assertEqual(total, result.bulk_bytes)
        self.assertEqual(1, pool.idle())
        second = self.stash(files)
        result = self.pull_again(conf, rpcapi, second, files)
        self.assertEqual(total, result.bulk_bytes)
        self.assertTrue(result.released)
        # One connection made, taken again by the second pull.
        created, reused, discarded = self.counts(pool)
        self.assertEqual((1, 1, 0), (created - before[0],
                                     reused - before[1],
                                     discarded - before[2]))
        # Each pull's queue is gone although the connection is kept.
        self.assertEqual(2, len(self.queues))
        self.assertQueuesGone()

    def test_connection_cut_by_a_broker_restart_is_not_reused(self):
        files = self.files()
        self.instance, first = self.make_source(files, chunk_size=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, rpc_timeout=5,
                                   pull_retries=8, pull_timeout=180)
        pool = self.pool(rpcapi)
        total = len(test_fixtures.chain_bytes(files))
        result, _ = self.pull_exact(conf, rpcapi, self.instance, first,
                                    files)
        self.assertEqual(total, result.bulk_bytes)
        self.assertGreaterEqual(pool.idle(), 1)
        kept = [conn for conn, _since in pool._idle]
        probe = bulk_receiver.BrokerProbe(rpcapi.bulk_url, rpcapi.bulk_ssl)
        self.addCleanup(probe.close)
        self.assertGreater(probe.round_trip(), 0.0)
        self.addCleanup(subprocess.run, ['rabbitmqctl', 'start_app'],
                        capture_output=True, check=False)
        subprocess.run(['rabbitmqctl', 'stop_app'], capture_output=True,
                       check=True)
        # The pacing's probe of a broker that is down: no sample, at once.
        started = time.monotonic()
        self.assertIsNone(probe.round_trip())
        self.assertLess(time.monotonic() - started,
                        bulk_receiver.PROBE_TIMEOUT + 1)
        subprocess.run(['rabbitmqctl', 'start_app'], capture_output=True,
                       check=True)
        second = self._stash_when_served(files)
        before = self.counts(pool)
        result = self.pull_again(conf, rpcapi, second, files)
        # The kept connection died with the broker: it was dropped and
        # the pull opened a new one; every byte still came over the bulk
        # channel and was checked.
        self.assertEqual(total, result.bulk_bytes)
        self.assertTrue(result.released)
        created, reused, discarded = self.counts(pool)
        self.assertGreaterEqual(discarded - before[2], 1)
        self.assertGreaterEqual(created - before[0], 1)
        idle = [conn for conn, _since in pool._idle]
        self.assertFalse(any(conn in idle for conn in kept))
        self.assertQueuesGone()
        # The probe opened a new connection of its own.
        self.assertGreater(probe.round_trip(), 0.0)

    def _stash_when_served(self, files):
        """A new stash, once the source serves again after the restart."""
        stash_id = self.stash(files)
        _conf, api = self.client('probe')
        deadline = time.monotonic() + 60
        while True:
            try:
                api.describe({}, 'src', self.instance, stash_id=stash_id)
                return stash_id
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def test_connection_that_failed_mid_pull_is_not_reused(self):
        files = pulls.FAULT_FILES
        self.instance, stash_id = self.make_source(files, chunk_size=MiB,
                                                   bulk_window=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB,
                                   rpc_timeout=5, pull_retries=8,
                                   pull_timeout=180)
        pool = self.pool(rpcapi)
        pool.close()
        before = self.counts(pool)
        chain = self.dest_chain(conf, self.instance)
        restart = pulls.BrokerRestart(self, self.src, at=2 * MiB)
        result = transfer.pull(conf, rpcapi, 'src', self.instance,
                               stash_id=stash_id, chain=chain,
                               progress=restart.progress)
        restart.join()
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        total = sum(len(d) for d in files.values())
        self.assertLess(result.bulk_bytes, total)
        # The pull's connection broke: closed, not kept for the next pull.
        self.assertEqual(1, pool.discarded - before[2])
        self.assertEqual(0, pool.idle())
        # The next pull opens a new connection and moves everything over
        # the bulk channel.
        second = self.stash(files)
        result = self.pull_again(conf, rpcapi, second, files)
        self.assertEqual(total, result.bulk_bytes)
        self.assertEqual(2, pool.created - before[0])
        self.assertEqual(0, pool.reused - before[1])
        self.assertQueuesGone()


class TestBulkFaults(BulkTestCase):

    def test_rabbitmq_restarted_mid_pull(self):
        files = pulls.FAULT_FILES
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_window=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB,
                                   rpc_timeout=5, pull_retries=8,
                                   pull_timeout=180)
        chain = self.dest_chain(conf, instance)
        restart = pulls.BrokerRestart(self, self.src, at=2 * MiB)
        result = transfer.pull(conf, rpcapi, 'src', instance,
                               stash_id=stash_id, chain=chain,
                               progress=restart.progress)
        restart.join()
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        # The bulk channel carried the start and was lost with the broker;
        # chunk calls brought the rest, through the restarted broker.
        total = sum(len(d) for d in files.values())
        self.assertLess(restart.done_when_back, total)
        self.assertGreaterEqual(result.bulk_bytes, 2 * MiB)
        self.assertLess(result.bulk_bytes, total)
        self.assertTrue(result.released)
        self.assertQueuesGone()
