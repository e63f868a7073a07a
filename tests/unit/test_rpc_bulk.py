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

"""RPC 1.2 (the bulk channel): negotiation, fallbacks, input checks.

On ``fake://`` there is no broker for the bulk channel, so every pull here
must silently use 1.1 chunk calls; pulls that really use the channel run
on RabbitMQ in tests/functional/test_bulk.py.
"""

import hashlib
import os
import shutil
import tempfile
from unittest import mock
import uuid
import zlib

import fixtures
from oslotest import base as test_base

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import bulk_receiver
from nova_consolelog.rpc import frames
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog import transfer

from tests import fixtures as test_fixtures

MiB = 1024 * 1024


class CountingAPI(test_fixtures.FaultyAPI):
    """The real client, also counting bulk window calls."""

    def __init__(self, api):
        super().__init__(api)
        self.windows = 0

    def send_range(self, *args, **kwargs):
        self.windows += 1
        return self.api.send_range(*args, **kwargs)


class TestMessages(test_base.BaseTestCase):

    def _headers(self, raw, compression='none', **overrides):
        headers = frames.chunk_headers('console.log.0', 4096, len(raw),
                                       hashlib.sha256(raw).hexdigest(),
                                       compression, False)
        headers.update(overrides)
        return headers

    def test_round_trip(self):
        raw = b'login: \x00\xff' * 100
        name, offset, data, sha256, eof = frames.decode_chunk(
            self._headers(raw, 'zlib'), zlib.compress(raw, 1))
        self.assertEqual(('console.log.0', 4096, raw, False),
                         (name, offset, data, eof))
        self.assertEqual(hashlib.sha256(raw).hexdigest(), sha256)

    def test_malformed(self):
        raw = b'abc'
        for headers, body in (
                ({}, raw),
                (None, raw),
                (self._headers(raw, offset=-1), raw),
                (self._headers(raw, offset='0'), raw),
                (self._headers(raw, eof='yes'), raw),
                (self._headers(raw, name=7), raw),
                (self._headers(raw, length=4), raw),
                (self._headers(raw, 'lz4'), raw),
                (self._headers(raw, 'zlib'), raw)):
            self.assertRaises(ValueError, frames.decode_chunk, headers,
                              body)

    def test_queue_names(self):
        name = cl_bulk.new_queue_name()
        self.assertEqual(name, cl_bulk.check_queue_name(name))
        self.assertNotEqual(name, cl_bulk.new_queue_name())
        for bad in ('nova', 'compute.host1', 'reply_' + uuid.uuid4().hex,
                    name + 'x', name.upper(), '', None, 5,
                    cl_bulk.QUEUE_PREFIX + '../' + 'a' * 29):
            self.assertRaises(exception.InvalidInput,
                              cl_bulk.check_queue_name, bad)


class TestSendRange(test_fixtures.ManagerTestCase):
    """send_console_log_range refuses bad input and publishes nothing."""

    def setUp(self):
        super().setUp()
        self.published = []
        # No broker here: record what would be published.
        self.manager.set_bulk_channel('amqp://127.0.0.1:1/')
        self.useFixture(fixtures.MockPatch(
            'nova_consolelog.rpc.bulk.Publisher.publish',
            side_effect=lambda queue, chunks: self.published.extend(
                (queue, h, b) for h, b in chunks)))
        self.queue = cl_bulk.new_queue_name()

    def _send(self, *args, **kwargs):
        return self._call('send_console_log_range', *args, **kwargs)

    def test_publishes_the_window_in_chunks(self):
        data = self.files['console.log.0']
        summary = self._send(self.uuid, None, 'console.log.0', 100, 10000,
                             self.queue, 'none')
        self.assertEqual({'chunks': 3, 'bytes': 10000, 'eof': False},
                         summary)
        self.assertEqual([self.queue] * 3, [q for q, _h, _b in
                                            self.published])
        got = b''
        for _queue, headers, body in self.published:
            name, offset, raw, sha256, _eof = frames.decode_chunk(headers,
                                                                  body)
            self.assertEqual(100 + len(got), offset)
            self.assertEqual(hashlib.sha256(raw).hexdigest(), sha256)
            got += raw
        self.assertEqual(data[100:10100], got)

    def test_end_of_file_and_compression(self):
        data = self.files['console.log.0']
        summary = self._send(self.uuid, None, 'console.log.0', 0,
                             len(data) + 5000, self.queue, 'zlib')
        self.assertTrue(summary['eof'])
        self.assertEqual(len(data), summary['bytes'])
        self.assertTrue(self.published[-1][1]['eof'])
        self.assertEqual(cl_fields.Compression.ZLIB,
                         self.published[0][1]['data_compression'])
        self.assertEqual(data, b''.join(
            frames.decode_chunk(h, b)[2] for _q, h, b in self.published))

    def test_window_cut_to_bulk_window(self):
        self.conf.set_override('bulk_window', 64 * 1024, group='consolelog')
        self.conf.set_override('chunk_size', 64 * 1024, group='consolelog')
        big = os.urandom(200 * 1024)
        test_fixtures.write_chain(self.conf, self.uuid, {'console.log.2': big})
        summary = self._send(self.uuid, None, 'console.log.2', 0,
                             cl_manager.MAX_WINDOW, self.queue, 'none')
        self.assertEqual({'chunks': 1, 'bytes': 64 * 1024, 'eof': False},
                         summary)

    def test_bad_input(self):
        ok = dict(instance_uuid=self.uuid, stash_id=None,
                  name='console.log.0', offset=0, length=4096,
                  reply_queue=self.queue, compression='none')
        for key, bad in (('reply_queue', 'nova'),
                         ('reply_queue', 'reply_' + uuid.uuid4().hex),
                         ('reply_queue', None),
                         ('length', cl_manager.MAX_WINDOW + 1),
                         ('length', 0), ('offset', -1),
                         ('offset', 10 ** 9), ('compression', 'lz4'),
                         ('compression', None), ('name', '../secret'),
                         ('name', 5), ('instance_uuid', 'x'),
                         ('stash_id', 7)):
            kwargs = dict(ok, **{key: bad})
            self.assertRejected(exception.ConsoleLogError,
                                'send_console_log_range', **kwargs)
        self.assertEqual([], self.published)

    def test_no_broker_or_bulk_off(self):
        self.conf.set_override('bulk_transfer', False, group='consolelog')
        self.assertRejected(exception.BulkUnavailable,
                            'send_console_log_range', self.uuid, None,
                            'console.log.0', 0, 10, self.queue, 'none')
        self.conf.clear_override('bulk_transfer', group='consolelog')
        self.manager.set_bulk_channel(None)
        self.assertRejected(exception.BulkUnavailable,
                            'send_console_log_range', self.uuid, None,
                            'console.log.0', 0, 10, self.queue, 'none')
        self.assertEqual([], self.published)


class TestNegotiation(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(test_fixtures.Hosts())
        self.uuid = str(uuid.uuid4())
        self.files = test_fixtures.sample_chain()

    def test_version_history(self):
        self.assertEqual('1.3', cl_api.ConsoleLogAPI.VERSION)
        # Aliases are release names (as nova's), each naming a version
        # this client knows.
        self.assertEqual({'nova-34': '1.3'},
                         cl_api.ConsoleLogAPI.VERSION_ALIASES)
        self.assertEqual('1.3', cl_manager.ConsoleLogManager.target.version)

    def test_cap_resolved_or_refused(self):
        resolve = cl_api.ConsoleLogAPI.resolve_cap
        self.assertIsNone(resolve(None))
        self.assertEqual('1.3', resolve('nova-34'))
        self.assertEqual('1.0', resolve('1.0'))
        for bad in ('initial', 'bulk', '1', '1.0.0', '1.x', ' 1.0', '1.0\n',
                    ''):
            self.assertRaises(exception.InvalidInput, resolve, bad)
        conf = self.hosts.conf('capped-badly')
        conf.set_override('consolelog', 'transfer', group='upgrade_levels')
        self.assertRaises(exception.InvalidInput, cl_api.ConsoleLogAPI,
                          conf, transport_url='fake://')

    def test_fake_transport_has_no_bulk_channel(self):
        src = self.hosts.start('src')
        test_fixtures.write_chain(src, self.uuid, self.files)
        conf, rpcapi = self.hosts.client('dst')
        self.assertIsNone(rpcapi.bulk_url)
        self.assertFalse(rpcapi.bulk_supported('src'))
        self.assertIsNone(
            self.hosts.servers['src'].endpoint.bulk_channel[0])
        self._pulled_with_chunk_calls(conf, rpcapi)

    def test_bulk_off_or_capped(self):
        _conf, rpcapi = self.hosts.client('dst')
        for cap, enabled in (('1.1', True),
                             (None, False)):
            conf = self.hosts.conf('dst-%s' % cap,
                                   bulk_transfer=enabled)
            conf.set_override('consolelog', cap, group='upgrade_levels')
            api = cl_api.ConsoleLogAPI(
                conf, transport=rpcapi.transport,
                transport_url='rabbit://guest:guest@127.0.0.1:5672/')
            self.assertFalse(api.bulk_supported('src'))
        conf = self.hosts.conf('dst-ok')
        api = cl_api.ConsoleLogAPI(
            conf, transport=rpcapi.transport,
            transport_url='rabbit://guest:guest@127.0.0.1:5672/')
        self.assertTrue(api.bulk_supported('src'))

    def test_peer_of_release_1_1(self):
        self.hosts.start('old', endpoint_cls=test_fixtures.Manager11)
        _conf, rpcapi = self.hosts.client('dst')
        # As if the transport were RabbitMQ: the version decides.
        rpcapi.bulk_url = 'amqp://127.0.0.1:1/'
        self.assertTrue(rpcapi.bulk_supported('old'))
        self.assertRaises(exception.PeerUnsupported, rpcapi.send_range, {},
                          'old', self.uuid, 'console.log', 0, 4096,
                          cl_bulk.new_queue_name())
        self.assertFalse(rpcapi.bulk_supported('old'))
        self.assertIn('old', rpcapi._pre_1_2)

    def test_unreachable_bulk_broker_falls_back(self):
        src = self.hosts.start('src')
        test_fixtures.write_chain(src, self.uuid, self.files)
        conf, rpcapi = self.hosts.client('dst')
        # A broker that refuses connections: the queue cannot be declared.
        rpcapi.bulk_url = 'amqp://guest:guest@127.0.0.1:1/'
        self._pulled_with_chunk_calls(conf, rpcapi)

    def _pulled_with_chunk_calls(self, conf, rpcapi):
        """A pull from ``src`` is byte-exact, without one bulk window."""
        api = CountingAPI(rpcapi)
        chain = self._chain(conf)
        result = transfer.pull(conf, api, 'src', self.uuid, chain=chain)
        self.assertEqual(0, api.windows)
        self.assertEqual(0, result.bulk_bytes)
        self.assertEqual(test_fixtures.chain_bytes(self.files),
                         self._history(chain))

    def _chain(self, conf):
        root = tempfile.mkdtemp(prefix='consolelog-bulk-')
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        return cl_chain.ConsoleLogChain(root, instance=self.uuid, conf=conf)

    def _history(self, chain):
        return b''.join(
            open(os.path.join(chain.directory, f.name), 'rb').read()
            for f in chain.history())


class FakeConnection:
    """A kombu connection as the receiver uses it, failing on demand."""

    def __init__(self, name):
        self.name = name
        self.released = False
        self.fail_channel = False
        self.channels = []
        self.default_channel = mock.Mock(name='default channel')

    def ensure_connection(self, max_retries=None):
        return self

    def channel(self):
        if self.fail_channel:
            raise ConnectionResetError('connection cut while idle')
        channel = mock.Mock(name='channel of %s' % self.name)
        self.channels.append(channel)
        return channel

    def drain_events(self, timeout=None):
        raise TimeoutError()

    def release(self):
        self.released = True


class TestReceiverPool(test_base.BaseTestCase):
    """A destination's bulk connections, reused across pulls."""

    def setUp(self):
        super().setUp()
        self.now = 100.0
        self.made = []

        def connection(url, ssl_params=False, io_timeout=None):
            conn = FakeConnection(len(self.made))
            conn.io_timeout = io_timeout
            self.made.append(conn)
            return conn
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.bulk.connect', connection))
        # No real queue or consumer: they talk to the channel only.
        self.useFixture(fixtures.MonkeyPatch('kombu.Queue', mock.Mock()))
        self.useFixture(fixtures.MonkeyPatch('kombu.Consumer', mock.Mock()))
        self.pool = bulk_receiver.ReceiverPool(
            'amqp://x/', size=2, idle_max=30, clock=lambda: self.now)
        self.addCleanup(self.pool.close)

    def receiver(self):
        return bulk_receiver.Receiver('amqp://x/', 8, pool=self.pool)

    def test_a_clean_pull_leaves_its_connection_to_the_next(self):
        first = self.receiver()
        with first:
            pass
        second = self.receiver()
        with second:
            pass
        self.assertEqual(1, len(self.made))
        self.assertEqual((1, 1, 0), (self.pool.created, self.pool.reused,
                                     self.pool.discarded))
        # Each pull has a queue of its own on a channel of its own, and
        # closed its channel at the end.
        self.assertNotEqual(first.queue_name, second.queue_name)
        self.assertEqual(2, len(self.made[0].channels))
        for channel in self.made[0].channels:
            channel.close.assert_called_once_with()
        self.assertFalse(self.made[0].released)

    def test_a_failed_connection_is_never_reused(self):
        receiver = self.receiver()
        with receiver:
            self.made[0].drain_events = mock.Mock(
                side_effect=ConnectionResetError('broker gone'))
            self.assertRaises(exception.BulkUnavailable, receiver.receive,
                              0.1)
        self.assertTrue(self.made[0].released)
        self.assertEqual(0, self.pool.idle())
        with self.receiver():
            pass
        self.assertEqual(2, len(self.made))
        self.assertEqual((2, 0, 1), (self.pool.created, self.pool.reused,
                                     self.pool.discarded))

    def test_a_failed_close_drops_the_connection(self):
        receiver = self.receiver()
        with receiver:
            receiver._channel.close.side_effect = OSError('gone')
        self.assertTrue(self.made[0].released)
        self.assertEqual(0, self.pool.idle())
        self.assertEqual(1, self.pool.discarded)

    def test_broker_probe_has_a_connection_of_its_own(self):
        probe = bulk_receiver.BrokerProbe('amqp://x/')
        self.addCleanup(probe.close)
        with self.receiver() as receiver:
            latency = probe.round_trip()
            self.assertIsInstance(latency, float)
            self.assertGreaterEqual(latency, 0.0)
            # Not the pull's connection: nothing of ours is read on the
            # way, and the pull's channel saw nothing of the probe.
            self.assertEqual(2, len(self.made))
            self.assertIs(self.made[0], receiver._conn)
            # Its answer is awaited for a bounded time; the pull's
            # consumer waits as long as it must.
            self.assertEqual(bulk_receiver.PROBE_TIMEOUT,
                             self.made[1].io_timeout)
            self.assertIsNone(self.made[0].io_timeout)
            declare = self.made[1].channels[0].exchange_declare
            declare.assert_called_once_with('amq.direct', 'direct',
                                            passive=True)
            receiver._channel.exchange_declare.assert_not_called()
            # Kept for the next probe.
            probe.round_trip()
            self.assertEqual(2, len(self.made))
            self.assertEqual(2, declare.call_count)

    def test_a_failed_probe_is_no_sample_and_reconnects(self):
        probe = bulk_receiver.BrokerProbe('amqp://x/')
        self.addCleanup(probe.close)
        probe.round_trip()
        self.made[0].channels[0].exchange_declare.side_effect = OSError(
            'connection reset')
        self.assertIsNone(probe.round_trip())
        self.assertTrue(self.made[0].released)
        self.assertIsInstance(probe.round_trip(), float)
        self.assertEqual(2, len(self.made))
        self.assertFalse(self.made[1].released)
        # A broker that refuses connections: no sample either.
        probe.close()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.bulk.connect',
            lambda url, ssl_params=False, io_timeout=None: self._failing()))
        self.assertIsNone(probe.round_trip())
        self.assertTrue(self.made[2].released)

    def test_one_probe_per_broker_and_tls(self):
        a = bulk_receiver.probe_for('amqp://a/', False)
        self.assertIs(a, bulk_receiver.probe_for('amqp://a/', False))
        self.assertIsNot(a, bulk_receiver.probe_for('amqp://b/', False))

    def test_a_connection_cut_while_idle_is_replaced(self):
        with self.receiver():
            pass
        # The broker restarted meanwhile: the kept connection fails at
        # once; the pull opens a new one and the old one is closed.
        self.made[0].fail_channel = True
        receiver = self.receiver()
        with receiver:
            self.assertIs(self.made[1], receiver._conn)
        self.assertTrue(self.made[0].released)
        self.assertEqual((2, 1, 1), (self.pool.created, self.pool.reused,
                                     self.pool.discarded))
        self.assertEqual(1, self.pool.idle())

    def test_a_new_connection_that_fails_is_not_retried(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.bulk.connect',
            lambda url, ssl_params=False: self._failing()))
        self.assertRaises(exception.BulkUnavailable,
                          self.receiver().__enter__)
        self.assertEqual(1, len(self.made))
        self.assertTrue(self.made[0].released)
        self.assertEqual(0, self.pool.idle())

    def _failing(self):
        conn = FakeConnection(len(self.made))
        conn.fail_channel = True
        self.made.append(conn)
        return conn

    def test_idle_too_long_is_closed_not_reused(self):
        with self.receiver():
            pass
        self.now += 31
        receiver = self.receiver()
        with receiver:
            self.assertIs(self.made[1], receiver._conn)
        self.assertTrue(self.made[0].released)
        self.assertEqual(0, self.pool.reused)
        # A timer closes them too when no pull comes.
        self.now += 31
        self.pool._prune()
        self.assertTrue(self.made[1].released)
        self.assertEqual(0, self.pool.idle())

    def test_pool_keeps_at_most_size(self):
        receivers = [self.receiver() for _ in range(3)]
        for r in receivers:
            r.__enter__()
        for r in receivers:
            r.__exit__(None, None, None)
        self.assertEqual(3, len(self.made))
        self.assertEqual(2, self.pool.idle())
        self.assertEqual([False, False, True],
                         [c.released for c in self.made])
        self.pool.close()
        self.assertTrue(all(c.released for c in self.made))

    def test_process_pool_per_broker_and_tls(self):
        a = bulk_receiver.receiver_pool_for('amqp://a/', False)
        self.assertIs(a, bulk_receiver.receiver_pool_for('amqp://a/', False))
        self.assertIsNot(a, bulk_receiver.receiver_pool_for('amqp://b/',
                                                            False))
        self.assertIsNot(a, bulk_receiver.receiver_pool_for(
            'amqp://a/', {'ca_certs': '/x'}))


class TestPublisherAfterABrokerRestart(test_base.BaseTestCase):
    """A source's pooled publisher connections, all cut at once."""

    def test_retry_never_takes_another_cut_connection(self):
        cut = [FakeConnection('cut-%d' % i) for i in range(3)]
        fresh = FakeConnection('fresh')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.bulk.connect',
            lambda url, ssl_params=False: fresh))
        self.useFixture(fixtures.MonkeyPatch('kombu.Producer', mock.Mock()))
        publisher = cl_bulk.Publisher('amqp://x/')
        publisher._free = list(cut)
        probed = []

        def probe(conn, queue, message):
            probed.append(conn)
            if conn is not fresh:
                raise ConnectionResetError('cut by the restart')
        publisher._probe = probe
        publisher.publish(cl_bulk.new_queue_name(),
                          iter([({}, b'a'), ({}, b'b')]))
        # One cut connection tried, then a new one: not another cut one.
        self.assertEqual([cut[-1], fresh], probed)
        self.assertTrue(all(c.released for c in cut))
        self.assertEqual([fresh], publisher._free)
        self.assertFalse(fresh.released)
