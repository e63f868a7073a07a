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

"""What the test suites share: configuration, chains, hosts, faults.

Why one module: test modules used to import each other's helpers (so a
unit test module was half library) and built their own ``ConfigOpts``
seven times over. Everything a second test module needs lives here; a
test module imports ``tests.fixtures`` and no other test module.

- configuration: ``new_conf`` (a private ConfigOpts with our options,
  optionally oslo.messaging's), ``ConfFixture`` (the same under
  oslo.config's fixture, overrides undone at cleanup), ``make_conf`` (one
  "host" with its own directories, for RPC tests);
- chains: ``UUID``, ``TEXT``, ``write_chain``, ``sample_chain``,
  ``chain_bytes``, ``tree``, ``ChainTestCase``;
- hosts on the bus: ``Hosts`` (endpoints on ``fake://`` or RabbitMQ),
  ``OldManager`` (a 1.0 peer), ``Manager11`` (a peer before the bulk
  channel), ``ManagerWithoutStashes`` and ``NoChunksManager`` (broken
  peers), ``ManagerTestCase`` (an endpoint called directly);
- faults: ``FaultyAPI``/``corrupt``/``time_out`` (a client that damages
  or loses chosen chunks), ``FaultyOS`` (an ``os`` failing its n-th
  call) given to every chain module (``chain_os``) or every module that
  touches an import's files (``faulty_os``).
"""

import collections
import contextlib
import errno
import os
import random
import shutil
import tempfile
import threading
from unittest import mock
import uuid

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import oslo_messaging
from oslotest import base as test_base

from nova_consolelog import chain as cl_chain
from nova_consolelog import chain_history
from nova_consolelog import chain_reads
from nova_consolelog import chain_snapshot
from nova_consolelog import conf as cl_conf
from nova_consolelog import fileutils
from nova_consolelog import history_import
from nova_consolelog import history_install
from nova_consolelog import history_slots
from nova_consolelog import import_ledger
from nova_consolelog import import_progress
from nova_consolelog import import_staging
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog.rpc import server as cl_server
from nova_consolelog.rpc import transport as cl_transport
from nova_consolelog import stash as cl_stash

UUID = '6f0a4b6e-1d1c-4c55-9a3a-3a3e0b0c6f11'


def new_conf(config_file=None, messaging=False, project=None, args=()):
    """A private ConfigOpts with our options registered, parsed.

    :param config_file: the one config file to read (None: none at all).
    :param messaging: also register what oslo.messaging needs on a
        private ConfigOpts (for a transport built on it).
    :param project: the ``project`` oslo.config is told (None: unset).
    """
    conf = cfg.ConfigOpts()
    cl_conf.register_opts(conf)
    if messaging:
        cl_transport.register_messaging_opts(conf)
    kwargs = dict(default_config_files=[config_file] if config_file else [],
                  default_config_dirs=[])
    if project is not None:
        kwargs['project'] = project
    conf(list(args), **kwargs)
    return conf


class ConfFixture(fixtures.Fixture):
    """``new_conf()`` under oslo.config's fixture: overrides are undone.

    ``.conf`` is the ConfigOpts; keyword arguments become overrides of
    ``[consolelog]``.
    """

    def __init__(self, **overrides):
        super().__init__()
        self.overrides = overrides

    def _setUp(self):
        conf = cfg.ConfigOpts()
        cl_conf.register_opts(conf)
        self.conf = self.useFixture(config_fixture.Config(conf)).conf
        for name, value in self.overrides.items():
            self.conf.set_override(name, value, 'consolelog')


def make_conf(root, host, topic, **overrides):
    """A private ConfigOpts for one host with its own directories."""
    conf = new_conf(messaging=True, project='nova')
    instances = os.path.join(root, host, 'instances')
    os.makedirs(instances, exist_ok=True)
    settings = dict(instances_path=instances,
                    stash_path=os.path.join(instances, cl_conf.STASH_DIR_NAME),
                    topic=topic, chunk_size=4096, rpc_timeout=10,
                    pull_timeout=60, pull_retries=3)
    settings.update(overrides)
    for name, value in settings.items():
        conf.set_override(name, value, group='consolelog')
    return conf


TEXT = b''.join(b'[%8d] login: guest on ttyS0 \x1b[0m\r\n' % i
                for i in range(3000))


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


class Manager11(cl_manager.ConsoleLogManager):
    """A release before the bulk channel: RPC 1.1, chunk calls only."""

    # The dispatcher refuses 1.2 calls by this version, as it would on a
    # release that does not have send_console_log_range at all.
    target = oslo_messaging.Target(version='1.1', namespace='consolelog')


class ManagerWithoutStashes:
    """An endpoint lacking a method its version claims (a broken peer)."""

    target = cl_manager.ConsoleLogManager.target

    def __init__(self, conf, host):
        self._manager = cl_manager.ConsoleLogManager(conf, host)

    @oslo_messaging.expose
    def describe_console_log(self, ctxt, **kwargs):
        return self._manager.describe_console_log(ctxt, **kwargs)


class NoChunksManager(ManagerWithoutStashes):
    """An endpoint that describes and lists, but serves no chunk."""

    @oslo_messaging.expose
    def list_console_log_stashes(self, ctxt, **kwargs):
        return self._manager.list_console_log_stashes(ctxt, **kwargs)


def tree(root):
    """Every path under root with its size and content: a change detector."""
    result = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            content = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as f:
                    content = f.read()
            result[path] = (st.st_mode, st.st_size, content)
    return result


class ManagerTestCase(test_base.BaseTestCase):
    """An endpoint on a chain in a temp dir, and a change detector."""

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp(prefix='consolelog-mgr-')
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.conf = make_conf(self.root, 'src', 'topic')
        self.uuid = str(uuid.uuid4())
        self.files = sample_chain()
        self.dir = write_chain(self.conf, self.uuid, self.files)
        self.secret = os.path.join(self.root, 'secret')
        with open(self.secret, 'wb') as f:
            f.write(b'secret bytes outside the chain')
        self.manager = cl_manager.ConsoleLogManager(self.conf, 'src')

    def _stash(self):
        other = str(uuid.uuid4())
        chain_dir = write_chain(self.conf, other, {
            'console.log.0': b'old', 'console.log': b'new'})
        stash = cl_stash.Stash.create(
            other, cl_chain.ConsoleLogChain(chain_dir, conf=self.conf),
            root=self.conf.consolelog.stash_path,
            conf=self.conf)
        return other, stash

    def _call(self, method, *args, **kwargs):
        # The endpoint marks our errors as expected for oslo.messaging's
        # dispatcher (no traceback logged); a direct call unwraps them.
        try:
            return getattr(self.manager, method)({}, *args, **kwargs)
        except oslo_messaging.ExpectedException as e:
            raise e.exc_info[1]

    def assertRejected(self, error, method, *args, **kwargs):
        before = tree(self.root)
        self.assertRaises(error, self._call, method, *args, **kwargs)
        self.assertEqual(before, tree(self.root))


class FaultyAPI:
    """The real client, with a fault on the first read of chosen chunks.

    faults maps (name, offset) to a function taking the real chunk
    (or None before the call) and returning a chunk or raising.
    """

    def __init__(self, api, faults=None, times=1):
        self.api = api
        self.faults = faults or {}
        self.times = times
        self.calls = collections.Counter()
        self.bytes = 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.api, name)

    def read_chunk(self, ctxt, host, instance_uuid, name, offset, length,
                   **kwargs):
        with self.lock:
            self.calls[(name, offset)] += 1
            count = self.calls[(name, offset)]
        fault = self.faults.get((name, offset))
        if fault is not None and count <= self.times:
            return fault(lambda: self.api.read_chunk(
                ctxt, host, instance_uuid, name, offset, length, **kwargs))
        chunk = self.api.read_chunk(ctxt, host, instance_uuid, name, offset,
                                    length, **kwargs)
        with self.lock:
            self.bytes += len(chunk.raw_data())
        return chunk


def corrupt(call):
    chunk = call()
    raw = bytearray(chunk.raw_data())
    raw[len(raw) // 2] ^= 0xff
    chunk.data = bytes(raw)
    chunk.compression = 'none'
    return chunk


def time_out(call):
    raise oslo_messaging.MessagingTimeout('injected')


# mtime of console.log in chains written by ChainTestCase.write.
VIRTLOGD_EPOCH = 1_700_000_000


class ChainTestCase(test_base.BaseTestCase):
    """A temporary directory and a private configuration."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.conf = self.useFixture(
            ConfFixture(instances_path=self.root)).conf
        self.dir = os.path.join(self.root, UUID)
        os.mkdir(self.dir)
        self.chain = cl_chain.ConsoleLogChain(self.dir, conf=self.conf)

    def write(self, name, data, directory=None, chain=None):
        """Write a chain file with the mtime virtlogd would have left.

        A chain written by one virtlogd has its files' last writes in
        rotation order (``.N`` oldest … ``.0``, then ``console.log``),
        whatever order a test creates them in.
        """
        path = os.path.join(directory or self.dir, name)
        with open(path, 'wb') as f:
            f.write(data)
        kind_index = (chain or self.chain).classify(name)
        if kind_index and kind_index[0] == 'backup':
            stamp = VIRTLOGD_EPOCH - 1 - kind_index[1]
            os.utime(path, (stamp, stamp))
        elif kind_index and kind_index[0] == 'log':
            os.utime(path, (VIRTLOGD_EPOCH, VIRTLOGD_EPOCH))

    def state(self, directory=None):
        """Everything in a directory: names, contents, modes."""
        directory = directory or self.dir
        result = {}
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if os.path.islink(path):
                result[name] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                result[name] = ('dir', self.state(path))
            elif os.path.isfile(path):
                with open(path, 'rb') as f:
                    result[name] = ('file', f.read(), st.st_mode)
            else:
                result[name] = ('other', st.st_mode)
        return result


@contextlib.contextmanager
def chain_os(faulty):
    """The chain's modules (listing, reads, history) get ``faulty``."""
    with mock.patch.object(cl_chain, 'os', faulty), \
            mock.patch.object(chain_snapshot, 'os', faulty), \
            mock.patch.object(chain_reads, 'os', faulty), \
            mock.patch.object(chain_history, 'os', faulty):
        yield


@contextlib.contextmanager
def faulty_os(faulty):
    """Every module that touches an import's files gets ``faulty``."""
    with chain_os(faulty), \
            mock.patch.object(history_import, 'os', faulty), \
            mock.patch.object(history_install, 'os', faulty), \
            mock.patch.object(import_staging, 'os', faulty), \
            mock.patch.object(import_progress, 'os', faulty), \
            mock.patch.object(history_slots, 'os', faulty), \
            mock.patch.object(import_ledger, 'os', faulty), \
            mock.patch.object(fileutils, 'os', faulty):
        yield


class FaultyOS:
    """``os`` for the chain module, failing the n-th call of ``names``."""

    NAMES = ('open', 'write', 'pwrite', 'fsync', 'rename', 'unlink',
             'listdir', 'lstat', 'fstat', 'ftruncate', 'pread')

    def __init__(self, fail_at, error=errno.EIO):
        self.fail_at = fail_at
        self.error = error
        self.calls = 0
        self.failed = None

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.NAMES:
            return real

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                self.failed = name
                raise OSError(self.error, os.strerror(self.error))
            return real(*args, **kwargs)
        return call


class CommandTestCase(test_base.BaseTestCase):
    """A temporary root with ``instances/`` and a ``nova.conf`` naming it.

    For tests of the ``nova-consolelog`` command line, which reads its
    options from a configuration file.
    """

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.instances = os.path.join(self.root, 'instances')
        os.mkdir(self.instances)
        self.config_file = os.path.join(self.root, 'nova.conf')
        self.configure(self.instances)

    def configure(self, instances_path):
        with open(self.config_file, 'w') as f:
            f.write('[consolelog]\ninstances_path = %s\n' % instances_path)
