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

"""The console-log RPC contract, on oslo.messaging's ``fake://`` driver.

Two "hosts" in one process talk over the fake driver (its exchanges are
shared by every transport in a process). The fake driver does not JSON-
encode replies, so what a real broker does to a reply is checked in
test_objects (serializer + jsonutils) and in the functional tests on
RabbitMQ. Every call costs about 50 ms here: keep call counts low.
"""

import hashlib
import uuid

import fixtures
import oslo_messaging
from oslotest import base as test_base

from nova_consolelog import exception
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import api as cl_api

from tests import fixtures as test_fixtures


class TestConsoleLogRPC(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(test_fixtures.Hosts())
        self.uuid = str(uuid.uuid4())
        self.files = test_fixtures.sample_chain()
        src = self.hosts.start('src')
        test_fixtures.write_chain(src, self.uuid, self.files)
        _conf, self.rpcapi = self.hosts.client('dst')

    def test_describe_with_tails_and_checksums(self):
        remote = self.rpcapi.describe({}, 'src', self.uuid, checksums=True,
                                      tail_bytes=30000)
        self.assertEqual(sorted(self.files, key=test_fixtures._order),
                         [f.name for f in remote.files])
        self.assertEqual([len(self.files[f.name]) for f in remote.files],
                         [f.size for f in remote.files])
        live = [f for f in remote.files if f.live]
        self.assertEqual(['console.log'], [f.name for f in live])
        self.assertIsNone(live[0].sha256)
        backup = remote.files[1]
        self.assertEqual(hashlib.sha256(self.files[backup.name]).hexdigest(),
                         backup.sha256)
        self.assertEqual(test_fixtures.chain_bytes(self.files)[-30000:],
                         remote.merged_tail(30000))

    def test_read_chunk_compressed_text(self):
        chunk = self.rpcapi.read_chunk({}, 'src', self.uuid, 'console.log.0',
                                       100, 4096)
        self.assertEqual(cl_fields.Compression.ZLIB, chunk.compression)
        self.assertEqual(self.files['console.log.0'][100:4196],
                         chunk.raw_data())
        self.assertFalse(chunk.eof)

    def test_read_chunk_random_uncompressed_and_eof(self):
        data = self.files['console.log.1']
        chunk = self.rpcapi.read_chunk({}, 'src', self.uuid, 'console.log.1',
                                       len(data) - 10, 4096)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(data[-10:], chunk.raw_data())
        self.assertTrue(chunk.eof)

    def test_length_cut_to_server_chunk_size(self):
        chunk = self.rpcapi.read_chunk({}, 'src', self.uuid, 'console.log.0',
                                       0, 8 * 1024 * 1024)
        self.assertEqual(4096, len(chunk.raw_data()))

    def test_client_capped_at_1_0(self):
        conf, rpcapi = self.hosts.client('dst2')
        conf.set_override('consolelog', '1.0', group='upgrade_levels')
        rpcapi = cl_api.ConsoleLogAPI(conf, transport=rpcapi.transport)
        self.assertEqual('1.0', rpcapi.version_cap)
        self.assertFalse(rpcapi.can_send_version('1.1'))
        chunk = self.rpcapi.read_chunk({}, 'src', self.uuid, 'console.log.0',
                                       0, 4096)
        chunk = rpcapi.read_chunk({}, 'src', self.uuid, 'console.log.0', 0,
                                  4096)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(self.files['console.log.0'][:4096], chunk.data)

    def test_server_speaking_only_1_0(self):
        old = self.hosts.start('old', endpoint_cls=test_fixtures.OldManager)
        test_fixtures.write_chain(old, self.uuid, self.files)
        chunk = self.rpcapi.read_chunk({}, 'old', self.uuid, 'console.log.0',
                                       0, 4096)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(self.files['console.log.0'][:4096],
                         chunk.raw_data())
        self.assertIn('old', self.rpcapi._only_1_0)

    def test_server_lacking_a_method(self):
        self.hosts.start('broken',
                         endpoint_cls=test_fixtures.ManagerWithoutStashes)
        self.assertRaises(exception.PeerUnsupported,
                          self.rpcapi.list_stashes, {}, 'broken', self.uuid)

    def test_capped_client_cannot_send_newer(self):
        conf, rpcapi = self.hosts.client('dst3')
        conf.set_override('consolelog', '1.0', group='upgrade_levels')
        rpcapi = cl_api.ConsoleLogAPI(conf, transport=rpcapi.transport)
        prepared = rpcapi._prepare('src', version='1.1')
        e = self.assertRaises(exception.PeerUnsupported,
                              cl_api._peer_support('x')(
                                  lambda self, ctxt, host: prepared.call(
                                      ctxt, 'describe_console_log',
                                      instance_uuid=self.uuid)),
                              self, {}, 'src')
        self.assertIn('src', str(e))

    def test_typed_errors_come_back(self):
        self.assertRaises(exception.InstanceDirNotFound, self.rpcapi.describe,
                          {}, 'src', str(uuid.uuid4()))
        self.assertRaises(exception.InvalidInput, self.rpcapi.read_chunk,
                          {}, 'src', self.uuid, '../etc/passwd', 0, 10)


class TestRemoteErrors(test_base.BaseTestCase):
    """Typed errors through a transport that does not allow our module."""

    def _call(self, error):
        def fn(self, ctxt, host):
            raise error
        return cl_api._peer_support('x')(fn)(None, {}, 'peer')

    def test_our_class_comes_back(self):
        e = self.assertRaises(
            exception.StashNotFound, self._call,
            oslo_messaging.RemoteError('StashNotFound', 'No stash s1', []))
        self.assertIn('No stash s1', str(e))

    def test_dispatcher_refusal_is_peer_unsupported(self):
        for name in ('NoSuchMethod', 'UnsupportedVersion'):
            self.assertRaises(exception.PeerUnsupported, self._call,
                              oslo_messaging.RemoteError(name, 'no', []))

    def test_other_remote_errors_stay(self):
        for name in ('KeyError', 'ConsoleLogErrorX', 'LOG', None):
            self.assertRaises(oslo_messaging.RemoteError, self._call,
                              oslo_messaging.RemoteError(name, 'x', []))


class TestNobodyListens(test_base.BaseTestCase):
    """A request the broker cannot route: no endpoint on that host."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.api.UNDELIVERABLE_INTERVAL', 0))
        self.calls = 0

    def _call(self, failures, first_contact=True):
        def fn(api, ctxt, host):
            self.calls += 1
            if self.calls <= failures:
                raise oslo_messaging.MessageUndeliverable(
                    None, 'nova', 'consolelog.peer', {})
            return 'answer'
        return cl_api._peer_support('x', first_contact)(fn)(None, {}, 'peer')

    def test_still_unroutable_after_the_retries_is_peer_unsupported(self):
        e = self.assertRaises(exception.PeerUnsupported, self._call, 99)
        self.assertIn('nothing listens', str(e))
        self.assertEqual(cl_api.UNDELIVERABLE_RETRIES + 1, self.calls)

    def test_mid_pull_it_is_a_delivery_failure_the_pull_retries(self):
        e = self.assertRaises(oslo_messaging.MessageDeliveryFailure,
                              self._call, 99, first_contact=False)
        self.assertIn('nothing listens', str(e))

    def test_a_listener_back_within_the_retries_answers(self):
        self.assertEqual('answer',
                         self._call(cl_api.UNDELIVERABLE_RETRIES))

    def test_client_asks_the_broker_to_return_unroutable_calls(self):
        hosts = self.useFixture(test_fixtures.Hosts())
        _conf, rpcapi = hosts.client('dst')
        self.assertTrue(rpcapi.client.transport_options.at_least_once)


class TestLacksCall(test_base.BaseTestCase):
    """The one test of "the peer does not offer this call"."""

    def test_local_and_remote_forms(self):
        lacks = cl_api._lacks_call
        self.assertEqual('UnsupportedVersion', lacks(
            oslo_messaging.UnsupportedVersion('1.3', method='x')))
        self.assertEqual('RPCVersionCapError', lacks(
            oslo_messaging.RPCVersionCapError(version='1.3',
                                              version_cap='1.0')))
        self.assertEqual('NoSuchMethod', lacks(
            oslo_messaging.RemoteError('NoSuchMethod', 'x')))
        self.assertIsNone(lacks(oslo_messaging.RemoteError('KeyError', 'x')))
        self.assertIsNone(lacks(oslo_messaging.MessagingTimeout('x')))
        self.assertIsNone(lacks(ValueError('NoSuchMethod')))

    def test_narrowed(self):
        lacks = cl_api._lacks_call
        only = ('UnsupportedVersion',)
        self.assertEqual('UnsupportedVersion', lacks(
            oslo_messaging.RemoteError('UnsupportedVersion', 'x'), only=only))
        self.assertIsNone(lacks(
            oslo_messaging.RemoteError('NoSuchMethod', 'x'), only=only))
        self.assertIsNone(lacks(
            oslo_messaging.NoSuchMethod('x'), only=only))
