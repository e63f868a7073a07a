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
import os
import random
import shutil
import tempfile
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslotest import base as test_base

from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog.rpc import server as cl_server
from nova_consolelog.rpc import transport as cl_transport

TEXT = b''.join(b'[%8d] login: guest on ttyS0 \x1b[0m\r\n' % i
                for i in range(3000))


def make_conf(root, host, topic, **overrides):
    """A private ConfigOpts for one host with its own directories."""
    conf = cfg.ConfigOpts()
    cl_conf.register_opts(conf)
    cl_transport.register_messaging_opts(conf)
    conf([], project='nova', default_config_files=[], default_config_dirs=[])
    instances = os.path.join(root, host, 'instances')
    os.makedirs(instances, exist_ok=True)
    settings = dict(instances_path=instances,
                    stash_path=os.path.join(instances, '.consolelog-stash'),
                    topic=topic, chunk_size=4096, rpc_timeout=10,
                    pull_timeout=60, pull_retries=3)
    settings.update(overrides)
    for name, value in settings.items():
        conf.set_override(name, value, group='consolelog')
    return conf


def write_chain(conf, instance_uuid, files):
    """Write ``{name: bytes}`` into the instance directory; its path."""
    path = os.path.join(conf.consolelog.instances_path, instance_uuid)
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)
    return path


def sample_chain(seed=0):
    """A chain with history, a gap-free set of backups and binary bytes."""
    rnd = random.Random(seed)
    return {
        'console.history.000001': bytes(range(256)) * 20 + b'\xff\xfe',
        'console.log.1': bytes(rnd.getrandbits(8) for _ in range(9000)),
        'console.log.0': TEXT[:20000],
        'console.log': b'\x00tail\xc3\x28' + TEXT[:5000],
    }


def chain_bytes(files):
    order = sorted(files, key=_order)
    return b''.join(files[n] for n in order)


def _order(name):
    if name.startswith('console.history.'):
        return (0, int(name.rsplit('.', 1)[1]))
    if name == 'console.log':
        return (2, 0)
    return (1, -int(name.rsplit('.', 1)[1]))


class Hosts(fixtures.Fixture):
    """Endpoints on fake:// as named hosts in this process."""

    def __init__(self, transport_url='fake://'):
        self.transport_url = transport_url

    def _setUp(self):
        self.root = tempfile.mkdtemp(prefix='consolelog-rpc-')
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.topic = 'consolelog-test-%s' % uuid.uuid4().hex
        self.servers = {}

    def conf(self, host, **overrides):
        return make_conf(self.root, host, self.topic, **overrides)

    def start(self, host, endpoint_cls=cl_manager.ConsoleLogManager,
              **overrides):
        conf = self.conf(host, **overrides)
        server = cl_server.ConsoleLogServer(
            conf, host, transport_url=self.transport_url,
            endpoint=endpoint_cls(conf, host))
        server.start()
        self.addCleanup(server.stop)
        self.servers[host] = server
        return conf

    def client(self, host, **overrides):
        conf = self.conf(host, **overrides)
        rpcapi = cl_api.ConsoleLogAPI(conf, transport_url=self.transport_url)
        self.addCleanup(rpcapi.transport.cleanup)
        return conf, rpcapi


class OldManager(cl_manager.ConsoleLogManager):
    """An endpoint of a release that speaks only 1.0."""

    target = oslo_messaging.Target(version='1.0', namespace='consolelog')

    @oslo_messaging.expose
    def read_console_log_chunk(self, ctxt, instance_uuid, name, offset,
                               length, stash_id=None):
        return super().read_console_log_chunk(
            ctxt, instance_uuid, name, offset, length, stash_id=stash_id)


class ManagerWithoutStashes:
    """An endpoint lacking a method its version claims (a broken peer)."""

    target = cl_manager.ConsoleLogManager.target

    def __init__(self, conf, host):
        self._manager = cl_manager.ConsoleLogManager(conf, host)

    @oslo_messaging.expose
    def describe_console_log(self, ctxt, **kwargs):
        return self._manager.describe_console_log(ctxt, **kwargs)


class TestConsoleLogRPC(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.hosts = self.useFixture(Hosts())
        self.uuid = str(uuid.uuid4())
        self.files = sample_chain()
        src = self.hosts.start('src')
        write_chain(src, self.uuid, self.files)
        _conf, self.rpcapi = self.hosts.client('dst')

    def test_describe_with_tails_and_checksums(self):
        remote = self.rpcapi.describe({}, 'src', self.uuid, checksums=True,
                                      tail_bytes=30000)
        self.assertEqual(sorted(self.files, key=_order),
                         [f.name for f in remote.files])
        self.assertEqual([len(self.files[f.name]) for f in remote.files],
                         [f.size for f in remote.files])
        live = [f for f in remote.files if f.live]
        self.assertEqual(['console.log'], [f.name for f in live])
        self.assertIsNone(live[0].sha256)
        backup = remote.files[1]
        self.assertEqual(hashlib.sha256(self.files[backup.name]).hexdigest(),
                         backup.sha256)
        self.assertEqual(chain_bytes(self.files)[-30000:],
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
        conf.set_override('consolelog', 'initial', group='upgrade_levels')
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
        old = self.hosts.start('old', endpoint_cls=OldManager)
        write_chain(old, self.uuid, self.files)
        chunk = self.rpcapi.read_chunk({}, 'old', self.uuid, 'console.log.0',
                                       0, 4096)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(self.files['console.log.0'][:4096],
                         chunk.raw_data())
        self.assertIn('old', self.rpcapi._only_1_0)

    def test_server_lacking_a_method(self):
        self.hosts.start('broken', endpoint_cls=ManagerWithoutStashes)
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
