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

"""The console-log RPC over RabbitMQ: typed errors, bad input, skew, CLI.

What the fake driver cannot show: replies really JSON-encoded, remote
exceptions rebuilt from ``allowed_remote_exmods``, and peers of another
release in another process.
"""

import hashlib
import os
import subprocess
import sys
import uuid

import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import api as cl_api
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import pulls

MiB = 1024 * 1024


class TestBadInputOverRPC(base.FunctionalTestCase):
    """Each case: a typed error back, and nothing changed on the source."""

    def setUp(self):
        super().setUp()
        self.src = self.start_host('src')
        self.uuid = str(uuid.uuid4())
        self.files = test_fixtures.sample_chain()
        self.dir = test_fixtures.write_chain(self.src.conf, self.uuid,
                                             self.files)
        self.secret = os.path.join(self.root, 'secret')
        with open(self.secret, 'wb') as f:
            f.write(b'must never be read')
        os.symlink(self.secret, os.path.join(self.dir, 'console.log.5'))
        _conf, self.rpcapi = self.client()

    def test_bad_input(self):
        api = self.rpcapi
        u = self.uuid
        size = len(self.files['console.log.0'])
        cases = [
            (exception.InvalidInput, api.read_chunk, u, '../secret', 0, 10),
            (exception.InvalidInput, api.read_chunk, u, self.secret, 0, 10),
            (exception.InvalidInput, api.read_chunk, u, '/etc/passwd', 0,
             10),
            (exception.InvalidInput, api.read_chunk, u,
             'console.log/../../secret', 0, 10),
            (exception.UnsafeChainFile, api.read_chunk, u, 'console.log.5',
             0, 10),
            (exception.UnsafeChainFile, api.describe, u),
            (exception.InstanceDirNotFound, api.describe,
             str(uuid.uuid4())),
            (exception.InvalidInput, api.describe, 'not-a-uuid'),
            (exception.InvalidInput, api.describe, '../' + u),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0', -1,
             10),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0',
             size + 1, 10),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0',
             2 ** 70, 10),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0', 0,
             -5),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0', 0,
             2 ** 40),
            (exception.InvalidInput, api.read_chunk, u, 'console.log.0',
             '0', 10),
            (exception.InvalidInput, api.read_chunk, u, ['console.log'], 0,
             10),
            (exception.ChainFileNotFound, api.read_chunk, u, 'console.log.3',
             0, 10),
            # A release without the token of a transfer is refused first.
            (exception.HandoverRefused, api.release, u, 'nosuchstash', {}),
            (exception.InvalidInput, api.release, u, '../../etc', {}),
            (exception.StashNotFound, api.describe, u, 'nosuchstash'),
        ]
        before = test_fixtures.tree(self.root)
        for error, method, *args in cases:
            e = self.assertRaises(error, method, {}, 'src', *args)
            # The class crossed the broker: not a RemoteError string.
            self.assertTrue(type(e).__name__.endswith('_Remote'), e)
            self.assertNotIn('must never be read', str(e))
        self.assertEqual(before, test_fixtures.tree(self.root))
        self.assertGreaterEqual(len(cases), 12)

    def test_typed_errors_on_a_foreign_transport(self):
        # nova-compute hands us its own transport, whose
        # allowed_remote_exmods does not name our exceptions module.
        conf, _rpcapi = self.client('nova-like')
        transport = oslo_messaging.get_rpc_transport(
            conf, url=base.TRANSPORT_URL, allowed_remote_exmods=[])
        self.addCleanup(transport.cleanup)
        api = cl_api.ConsoleLogAPI(conf, transport=transport)
        self.assertRaises(exception.HandoverRefused, api.release, {}, 'src',
                          self.uuid, 'nosuchstash', {})
        self.assertRaises(exception.StashNotFound, api.release, {}, 'src',
                          self.uuid, 'nosuchstash', {},
                          transfer_token='0' * 32, puller_host='dst')
        self.assertRaises(exception.InvalidInput, api.read_chunk, {}, 'src',
                          self.uuid, '../secret', 0, 10)

    def test_host_without_our_endpoint_is_unsupported_not_a_timeout(self):
        # A source running nova's own driver: no queue for our topic
        # there. RabbitMQ returns the request (mandatory flag) instead of
        # letting it wait out rpc_timeout inside nova's request.
        _conf, api = self.client('nova-like', rpc_timeout=120)
        e = self.assertRaises(exception.PeerUnsupported, api.list_stashes,
                              {}, 'host-without-consolelog', self.uuid)
        self.assertIn('nothing listens', str(e))


class TestVersionSkew(pulls.PullTestCase):

    FILES = {'console.log.0': pulls.text_bytes(MiB, 1),
             'console.log': pulls.random_bytes(300 * 1024, 2)}

    def _pull(self, host, conf, rpcapi):
        # A stash: an older source cannot pin its live chain, whose files
        # it still writes, so only stashes are pulled from it.
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(host.conf, instance, self.FILES)
        stash_id = cl_stash.Stash.create(
            instance, cl_chain.ConsoleLogChain(directory, conf=host.conf),
            root=host.conf.consolelog.stash_path, conf=host.conf).stash_id
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, rpcapi, host.name, instance,
                               stash_id=stash_id, chain=chain)
        self.assertEqual(test_fixtures.chain_bytes(self.FILES),
                         self.history(chain))
        return result

    def test_new_client_old_server(self):
        old = self.start_host('old', script='old')
        conf, rpcapi = self.client()
        result = self._pull(old, conf, rpcapi)
        # 1.0 chunks are never compressed.
        self.assertEqual(result.bytes, result.wire_bytes)
        self.assertIn('old', rpcapi._only_1_0)

    def test_capped_client_new_server(self):
        new = self.start_host('new')
        conf, rpcapi = self.client()
        conf.set_override('consolelog', '1.0', group='upgrade_levels')
        capped = cl_api.ConsoleLogAPI(conf, transport=rpcapi.transport)
        result = self._pull(new, conf, capped)
        self.assertEqual(result.bytes, result.wire_bytes)
        # The same server compresses for a 1.1 client.
        conf.clear_override('consolelog', group='upgrade_levels')
        result = self._pull(new, conf, cl_api.ConsoleLogAPI(
            conf, transport=rpcapi.transport))
        self.assertLess(result.wire_bytes, result.bytes)

    def test_server_lacking_a_method(self):
        broken = self.start_host('broken', script='no-chunks')
        conf, rpcapi = self.client()
        instance = str(uuid.uuid4())
        test_fixtures.write_chain(broken.conf, instance, self.FILES)
        chain = self.dest_chain(conf, instance)
        self.assertRaises(exception.PeerUnsupported, transfer.pull, conf,
                          rpcapi, 'broken', instance, chain=chain)
        self.assertRaises(exception.PeerUnsupported, rpcapi.release, {},
                          'broken', instance, 'abc', {})
        self.assertEqual(b'', self.history(chain))


class TestCommandLine(pulls.PullTestCase):

    def test_pull_command(self):
        files = {'console.log.0': pulls.random_bytes(700 * 1024, 3),
                 'console.log': b'login: \xff\n'}
        instance, stash_id = self.make_source(files)
        dst = base.HostProcess(self.root, 'dst', self.topic)
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_consolelog.cmd.main',
             '--config-file', dst.config_file, 'pull', '--from', 'src',
             '--instance', instance, '--stash', stash_id,
             '--transport-url', base.TRANSPORT_URL],
            capture_output=True, timeout=120, cwd=base.REPO)
        self.assertEqual(0, proc.returncode, proc.stderr[-3000:])
        self.assertIn(b'stash released', proc.stdout)
        self.assertIn(b'(100%', proc.stderr)
        path = os.path.join(dst.conf.consolelog.instances_path, instance,
                            'console.history.000001')
        with open(path, 'rb') as f:
            self.assertEqual(
                hashlib.sha256(test_fixtures.chain_bytes(files)).hexdigest(),
                hashlib.sha256(f.read()).hexdigest())

    def test_pull_command_bad_uuid(self):
        dst = base.HostProcess(self.root, 'dst', self.topic)
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_consolelog.cmd.main',
             '--config-file', dst.config_file, 'pull', '--from', 'src',
             '--instance', '../etc', '--transport-url', base.TRANSPORT_URL],
            capture_output=True, timeout=60, cwd=base.REPO)
        self.assertEqual(2, proc.returncode, proc.stderr[-3000:])
        self.assertIn(b'malformed instance uuid', proc.stderr)
        self.assertNotIn(b'Traceback', proc.stderr)

    def test_compression_field_values(self):
        self.assertEqual(('none', 'zlib'), cl_fields.Compression.ALL)
