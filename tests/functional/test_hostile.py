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

"""A hostile peer on nova's bus against a real ``nova-consolelog serve``.

Issue 10. Anyone holding nova's RabbitMQ credentials can call any method
name on the console-log endpoint with any arguments, see every request to
it (reply queue names and request tokens included) and publish into any
queue (DESIGN.md fact 12). Every case here is such an attack, made with
the third-party tools of tests/functional/hostile.py (no code of our
client protects the endpoint), and checks, as applicable:

* a typed error: a class of ``nova_consolelog.exception``, or the
  dispatcher's NoSuchMethod / UnsupportedVersion for undocumented calls —
  never a builtin error or a RemoteError, never a timeout;
* no byte outside the named chain in what came back (a secret file next to
  the instances, another instance's chain), and an error text that stays
  small;
* no state change: the instances and stash trees are the same, path by
  path (type, size, sha256 or link target), before and after;
* the endpoint still serving a good request afterwards.

The RPC 1.3 cases (``open_console_log_transfer``, release tokens, frames
bound to their request) are written to the 1.3 protocol.
"""

import base64
import concurrent.futures
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import zlib

import oslo_messaging
import testtools

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog.rpc import server as cl_server
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import hostile
from tests.functional import test_pull

KiB = 1024
MiB = 1024 * KiB
# An error's text (message and remote traceback) stays below this.
MAX_ERROR = 4 * KiB
# What the endpoint's peak memory may grow by during a flood.
FLOOD_MEMORY = 64 * MiB
# Seconds within which a call that must not wait (a FIFO, a huge file) is
# answered.
QUICK = 8

# Release refused for want of the right token (RPC 1.3), or malformed.
RELEASE_REFUSED = (exception.HandoverRefused, exception.InvalidInput)
UNDOCUMENTED = (oslo_messaging.NoSuchMethod,
                oslo_messaging.UnsupportedVersion)
# A malformed call of a documented method: any of our typed errors.
TYPED = (exception.ConsoleLogError,) + UNDOCUMENTED
INVALID = (exception.InvalidInput,)
NO_STASH = (exception.InvalidInput, exception.StashNotFound)
# What a symlinked instance or stash directory may be refused with.
REFUSED_DIR = (exception.InstanceDirNotFound, exception.UnsafeChainFile,
               exception.StashNotFound, exception.InvalidInput)


def _short(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _object_data(primitive):
    return primitive['nova_consolelog_object.data']


def _chunk_bytes(primitive):
    data = _object_data(primitive)
    raw = base64.b64decode(data['data'])
    if data.get('compression') == 'zlib':
        raw = zlib.decompress(raw)
    return raw


class HostileTestCase(base.FunctionalTestCase):
    """A ``nova-consolelog serve`` with chains, a stash, and bait.

    ``self.uuid``: an instance with a chain (``self.files``); ``self.other``
    another instance whose chain is in stash ``self.stash_id``; a secret
    file outside every chain. None of the bait may ever come back from a
    call that names ``self.uuid`` or a made-up id.
    """

    SERVE = {}

    def setUp(self):
        super().setUp()
        self.src = self.start_host('src', **self.SERVE)
        conf = self.src.conf
        self.instances = conf.consolelog.instances_path
        self.stash_root = conf.consolelog.stash_path
        self.outside = os.path.join(self.root, 'outside')
        os.makedirs(self.outside)
        self.secret_mark = b'HOSTILE-SECRET-%s' % uuid.uuid4().hex.encode()
        self.secret = os.path.join(self.outside, 'secret')
        with open(self.secret, 'wb') as f:
            f.write(self.secret_mark + b'\n' + b'x' * 1000)
        self.uuid = str(uuid.uuid4())
        self.files = test_fixtures.sample_chain()
        self.dir = test_fixtures.write_chain(conf, self.uuid, self.files)
        self.other = str(uuid.uuid4())
        self.other_mark = b'HOSTILE-OTHER-%s' % uuid.uuid4().hex.encode()
        self.other_files = {
            'console.log.0': self.other_mark + b'\n' * 5000,
            'console.log': self.other_mark + b' live\n' * 100}
        other_dir = test_fixtures.write_chain(conf, self.other,
                                              self.other_files)
        self.stash_id = cl_stash.Stash.create(
            self.other, cl_chain.ConsoleLogChain(other_dir, conf=conf),
            root=self.stash_root, conf=conf).stash_id
        self.marks = [self.secret_mark, self.other_mark]
        self.raw = hostile.RawClient(self.topic)
        self.addCleanup(self.raw.close)
        self.assertServing()
        self.mark()

    # -- the attacker's calls --------------------------------------------

    def call(self, method, version='1.0', timeout=None, **kwargs):
        return self.raw.call('src', method, version=version,
                             timeout=timeout, **kwargs)

    def refused(self, errors, method, version='1.0', timeout=30, **kwargs):
        """Call; assert one of ``errors`` came back, small and clean."""
        try:
            reply = self.call(method, version=version, timeout=timeout,
                              **kwargs)
        except Exception as e:
            error = e
        else:
            self.fail('%s %s(%s) was answered: %s' % (
                version, method, _short(kwargs), _short(reply)))
        text = str(error)
        self.assertIsInstance(
            error, errors, '%s %s(%s): %s: %s' % (
                version, method, _short(kwargs), type(error).__name__,
                text[:500]))
        self.assertLess(len(text.encode('utf-8', 'replace')), MAX_ERROR,
                        '%s(%s): error of %d bytes' % (
                            method, _short(kwargs), len(text)))
        self.assertClean(text)
        return error

    def each_refused(self, errors, method, arg, values, version='1.0',
                     **kwargs):
        for value in values:
            self.refused(errors, method, version=version,
                         **dict(kwargs, **{arg: value}))

    # -- judging -----------------------------------------------------------

    def snapshot(self):
        return hostile.tree(self.instances, self.stash_root, self.outside)

    def mark(self):
        """Take the "before" snapshot (after a test planted its traps)."""
        self.before = self.snapshot()

    def assertUnchanged(self):
        after = self.snapshot()
        changed = sorted(p for p in set(self.before) | set(after)
                         if self.before.get(p) != after.get(p))
        self.assertEqual([], changed, 'paths changed by a hostile call')

    def assertClean(self, value, marks=None):
        """No bait in ``value``: text, bytes or a reply (base64 included)."""
        marks = self.marks if marks is None else marks
        if isinstance(value, dict):
            for item in value.values():
                self.assertClean(item, marks)
            return
        if isinstance(value, (list, tuple)):
            for item in value:
                self.assertClean(item, marks)
            return
        if isinstance(value, str):
            blobs = [value.encode('utf-8', 'replace')]
            try:
                blobs.append(base64.b64decode(value, validate=True))
            except ValueError:
                pass
        elif isinstance(value, bytes):
            blobs = [value]
        else:
            return
        for blob in blobs:
            for mark in marks:
                self.assertNotIn(mark, blob)

    def assertServing(self):
        """A good describe and a good read still answer the right bytes."""
        described = _object_data(self.call(
            'describe_console_log', instance_uuid=self.uuid, timeout=30))
        self.assertEqual(
            sorted((n, len(d)) for n, d in self.files.items()),
            sorted((_object_data(f)['name'], _object_data(f)['size'])
                   for f in described['files']))
        chunk = self.call('read_console_log_chunk', instance_uuid=self.uuid,
                          name='console.log.0', offset=100, length=4000,
                          timeout=30)
        self.assertEqual(self.files['console.log.0'][100:4100],
                         _chunk_bytes(chunk))

    def assertSafe(self):
        """The end of every hostile case: nothing changed, still serving."""
        self.assertUnchanged()
        self.assertServing()

    # -- traps -----------------------------------------------------------

    def new_instance(self, files=None):
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(
            self.src.conf, instance, files or {'console.log': b'ok\n'})
        return instance, directory

    def outside_chain(self, name):
        """A chain outside the instances path, holding the secret."""
        directory = os.path.join(self.outside, name)
        os.makedirs(directory)
        for member in ('console.log', 'console.log.0'):
            with open(os.path.join(directory, member), 'wb') as f:
                f.write(self.secret_mark + b' in ' + member.encode())
        return directory

    def peak(self, pid=None):
        """Reset ``pid``'s peak RSS; a function giving its growth since."""
        pid = pid or self.src.proc.pid
        hostile.reset_peak(pid)
        start = hostile.memory(pid)[1]
        return lambda: hostile.memory(pid)[0] - start

    def record(self, name, text):
        self.addDetail(name, testtools.content.text_content(text))
        print('%s: %s' % (name, text), file=sys.stderr, flush=True)


class TestOnlyDocumentedCalls(HostileTestCase):
    """oslo.messaging dispatches every attribute its access policy allows.

    The default policy allows every name not starting with ``_``: the
    endpoint's configuration object, its host name, anything public.
    """

    def test_dispatcher_accepts_exactly_the_documented_calls(self):
        """List what the server's own dispatcher would hand to an endpoint.

        Build the server as ``serve`` does (on ``fake://``), take its
        dispatcher and its access policy, and ask it about every attribute
        of every endpoint in our namespace.
        """
        conf = test_fixtures.make_conf(self.root, 'probe', self.topic)
        transport = oslo_messaging.get_rpc_transport(conf, url='fake://')
        self.addCleanup(transport.cleanup)
        server = cl_server.ConsoleLogServer(conf, 'probe',
                                            transport=transport)
        dispatcher = server._server.dispatcher
        accepted = set()
        versions = []
        for endpoint in dispatcher.endpoints:
            target = getattr(endpoint, 'target', None)
            if target is None or hostile.NAMESPACE not in (
                    target.accepted_namespaces):
                continue
            for name in dir(endpoint):
                if dispatcher.access_policy.is_allowed(endpoint, name):
                    accepted.add(name)
            versions.append(target.version)
        self.assertEqual(sorted(hostile.DOCUMENTED), sorted(accepted))
        # Every endpoint of the namespace speaks 1.3.
        for version in versions:
            major, minor = (int(p) for p in version.split('.'))
            self.assertEqual((1, True), (major, minor >= 3), version)
        # And the version history of the client documents each of them.
        for name in hostile.DOCUMENTED:
            self.assertIn(name, cl_api.ConsoleLogAPI.__doc__)
        self.assertSafe()

    def test_public_attributes_of_the_endpoint_refused(self):
        """Call every public attribute of the endpoint object by name.

        ``conf``, ``host``, ``target``, ``bulk_url``, ``bulk_ssl`` and any
        public helper: NoSuchMethod, at every version.
        """
        manager = cl_manager.ConsoleLogManager(self.src.conf, 'src')
        names = {n for n in dir(manager) if not n.startswith('_')}
        names |= {'conf', 'host', 'target', 'bulk_url', 'bulk_ssl'}
        names -= hostile.DOCUMENTED
        for name in sorted(names):
            for version in ('1.0', '1.3'):
                self.refused(UNDOCUMENTED, name, version=version)
        self.assertSafe()

    def test_private_and_special_names_refused(self):
        """Python's own and the endpoint's private names: NoSuchMethod."""
        for name in ('__init__', '__class__', '__dict__', '__call__',
                     '__getattribute__', '__reduce_ex__', '__del__',
                     '_lock', '_stash', '_chain', '_sha256', '_check_read',
                     '_instance_chain', '_stash_root', '_describe_stash',
                     '_source', '_read'):
            self.refused(UNDOCUMENTED, name, instance_uuid=self.uuid,
                         stash_id=self.stash_id)
        self.assertSafe()

    def test_names_of_other_objects_refused(self):
        """Names of library objects an endpoint might inherit or hold."""
        for name in ('obj_from_primitive', 'obj_to_primitive',
                     'oslo_rpc_server_ping', 'set_override',
                     'reload_config_files', 'mutate_config_files', 'reset',
                     'describe', 'read_chunk', 'release', 'pull', 'serve',
                     'create', 'expire', 'load', 'restore',
                     'install_as_history', 'Describe_console_log',
                     'describe_console_log ', 'describe_console_log\n',
                     'describe_console_log.__call__', ''):
            self.refused(UNDOCUMENTED, name, instance_uuid=self.uuid)
        self.assertSafe()

    def test_configuration_object_cannot_be_called(self):
        """Call ``conf`` as ConfigOpts.__call__ with a file the caller names.

        On a default access policy this re-reads the configuration from
        that file (the parse error echoes the file's first line back) and
        the endpoint then serves another instances path.
        """
        evil = os.path.join(self.outside, 'evil.conf')
        elsewhere = os.path.join(self.outside, 'instances')
        hidden = str(uuid.uuid4())
        os.makedirs(os.path.join(elsewhere, hidden))
        with open(os.path.join(elsewhere, hidden, 'console.log'), 'wb') as f:
            f.write(self.secret_mark)
        with open(evil, 'w') as f:
            f.write('[consolelog]\ninstances_path = %s\n' % elsewhere)
        self.mark()
        # ConfigOpts.__call__(args, project, ..., default_config_files):
        # the dispatcher passes the context as ``args``.
        self.refused(UNDOCUMENTED, 'conf', timeout=10,
                     default_config_files=[evil])
        self.refused(UNDOCUMENTED, 'conf', timeout=10, project='nova',
                     default_config_files=[self.secret])
        # Still our instances path: the hidden chain is not found.
        self.refused((exception.InstanceDirNotFound,), 'describe_console_log',
                     instance_uuid=hidden)
        self.assertSafe()

    def test_documented_calls_at_versions_not_offered(self):
        """A documented name at a major or minor version nobody offers."""
        for version in ('2.0', '1.99', '0.9'):
            self.refused(UNDOCUMENTED, 'describe_console_log',
                         version=version, instance_uuid=self.uuid)
        self.assertSafe()

    def test_documented_calls_in_other_namespaces(self):
        """The right name, in nova's default namespace or another one."""
        for namespace in (None, 'nova', 'baseapi', 'consolelog2'):
            try:
                self.raw.call('src', 'describe_console_log',
                              namespace=namespace, instance_uuid=self.uuid)
            except UNDOCUMENTED:
                continue
            self.fail('answered in namespace %r' % namespace)
        self.assertSafe()

    def test_unexpected_and_missing_arguments(self):
        """Extra keyword arguments, or required ones left out: typed."""
        self.refused(TYPED, 'describe_console_log', instance_uuid=self.uuid,
                     path='/etc')
        self.refused(TYPED, 'describe_console_log')
        self.refused(TYPED, 'read_console_log_chunk', instance_uuid=self.uuid)
        self.refused(TYPED, 'release_console_log_stash',
                     instance_uuid=self.other, stash_id=self.stash_id)
        self.assertSafe()


class TestBadInstanceIds(HostileTestCase):

    BAD_IDS = ['', 'not-a-uuid', '*', '#', '..', '../x',
               '../../etc/passwd', '/etc/passwd', 'x' * 36]

    def _bad_ids(self):
        return self.BAD_IDS + [
            '../' + self.uuid, self.uuid + '/..', self.uuid + '/',
            self.uuid + '\n', self.uuid + '\0', '\0' + self.uuid,
            '../' + os.path.basename(self.instances) + '/' + self.uuid]

    def test_describe_and_list_with_malformed_ids(self):
        """Paths, wildcards, control characters in place of a uuid."""
        for bad in self._bad_ids():
            self.refused(INVALID, 'describe_console_log', instance_uuid=bad)
            self.refused(INVALID, 'list_console_log_stashes',
                         instance_uuid=bad)
        self.assertSafe()

    def test_read_and_release_with_malformed_ids(self):
        """The same ids on the calls that read and that delete."""
        for bad in self._bad_ids():
            self.refused(INVALID, 'read_console_log_chunk', instance_uuid=bad,
                         name='console.log', offset=0, length=10)
            self.refused(INVALID, 'release_console_log_stash',
                         instance_uuid=bad, stash_id=self.stash_id,
                         sha256s={})
        self.assertSafe()

    def test_instance_id_of_wrong_types(self):
        """None, numbers, lists and dicts as instance_uuid."""
        for bad in (None, 0, 1.5, True, [], [self.uuid], {},
                    {'uuid': self.uuid}):
            self.refused(INVALID, 'describe_console_log', instance_uuid=bad)
            self.refused(INVALID, 'read_console_log_chunk', instance_uuid=bad,
                         name='console.log', offset=0, length=10)
        self.assertSafe()

    def test_twenty_mib_instance_id_gets_a_small_error(self):
        """A 20 MiB instance id on every call: the error must not echo it.

        An error that repeats its input costs the endpoint many times that
        input in memory (repr, message, traceback, JSON) and the broker the
        same again.
        """
        huge = 'x' * (20 * MiB)
        calls = [
            ('1.0', 'describe_console_log', {}),
            ('1.0', 'list_console_log_stashes', {}),
            ('1.0', 'read_console_log_chunk',
             dict(name='console.log', offset=0, length=10)),
            ('1.0', 'release_console_log_stash',
             dict(stash_id=self.stash_id, sha256s={})),
            ('1.2', 'send_console_log_range',
             dict(stash_id=None, name='console.log', offset=0, length=10,
                  reply_queue=hostile.bulk_queue_name(),
                  compression='none')),
            ('1.3', 'open_console_log_transfer',
             dict(stash_id=None, puller_host='dst')),
        ]
        for version, method, kwargs in calls:
            self.refused(INVALID, method, version=version, timeout=60,
                         instance_uuid=huge, **kwargs)
        self.assertSafe()

    def test_stash_of_another_instance(self):
        """A real stash id under the wrong instance: not found, no bytes."""
        self.refused((exception.StashNotFound,), 'describe_console_log',
                     instance_uuid=self.uuid, stash_id=self.stash_id,
                     checksums=True, tail_bytes=1000)
        self.refused((exception.StashNotFound,), 'read_console_log_chunk',
                     instance_uuid=self.uuid, stash_id=self.stash_id,
                     name='console.log.0', offset=0, length=100)
        self.refused((exception.StashNotFound,) + RELEASE_REFUSED,
                     'release_console_log_stash', instance_uuid=self.uuid,
                     stash_id=self.stash_id, sha256s={})
        self.assertSafe()


class TestBadNames(HostileTestCase):

    def test_path_traversal_in_names(self):
        """Paths, NUL bytes and near-miss names in place of a member name."""
        other = '../%s/console.log' % self.other
        for name in ('../x', '..', '.', '', '/etc/passwd', self.secret,
                     'console.log/..', 'console.log/../console.log.0',
                     './console.log', 'console.log/', other,
                     '../../outside/secret', 'console.log\0',
                     'console.log\0../../secret', '\0', 'console.log.-1',
                     'console.log.01', 'console.log.0 ', ' console.log',
                     'console.log\n', 'CONSOLE.LOG', 'console.history.1',
                     'console.history.000001/', 'manifest.json',
                     'console.log.9999999999', '*', 'console.log.*'):
            self.refused((exception.InvalidInput,
                          exception.ChainFileNotFound),
                         'read_console_log_chunk', instance_uuid=self.uuid,
                         name=name, offset=0, length=100)
        self.assertSafe()

    def test_names_of_wrong_types(self):
        """None, numbers, lists and dicts as a member name."""
        self.each_refused(INVALID, 'read_console_log_chunk', 'name',
                          [None, 0, 1.5, True, ['console.log'],
                           {'name': 'console.log'}],
                          instance_uuid=self.uuid, offset=0, length=100)
        self.assertSafe()

    def test_traversal_through_the_bulk_channel(self):
        """The same names on send_console_log_range, into a queue of ours.

        Nothing may arrive in the queue.
        """
        forger = hostile.Forger()
        self.addCleanup(forger.close)
        queue = forger.own_queue()
        for name in ('../x', '/etc/passwd', self.secret, 'console.log/..',
                     'console.log\0', '../%s/console.log' % self.other,
                     None, ['console.log']):
            self.refused((exception.InvalidInput,
                          exception.ChainFileNotFound),
                         'send_console_log_range', version='1.2',
                         instance_uuid=self.uuid, stash_id=None, name=name,
                         offset=0, length=4096, reply_queue=queue,
                         compression='none')
        time.sleep(0.5)
        self.assertEqual([], forger.drain(queue))
        self.assertSafe()

    def test_huge_name_gets_a_small_error(self):
        """A 20 MiB member name: refused without being echoed."""
        self.refused(INVALID, 'read_console_log_chunk', timeout=60,
                     instance_uuid=self.uuid, name='../' * (7 * MiB),
                     offset=0, length=10)
        self.assertSafe()


class TestBadStashIds(HostileTestCase):

    def _bad(self):
        return ['a/b', '..', '.', '../' + self.stash_id,
                self.stash_id + '/..', '/' + self.stash_id, 'x' * 65,
                'a\0b', self.stash_id + '\0', '*', '#', 'a b',
                '../../%s' % self.other]

    def test_malformed_stash_ids_on_describe_and_read(self):
        """Paths, 65 characters, NUL bytes and wildcards as stash ids."""
        for bad in self._bad():
            self.refused(INVALID, 'describe_console_log',
                         instance_uuid=self.other, stash_id=bad)
            self.refused(INVALID, 'read_console_log_chunk',
                         instance_uuid=self.other, stash_id=bad,
                         name='console.log', offset=0, length=10)
        # A trailing newline names no stash (it is never the real one).
        self.refused(NO_STASH, 'describe_console_log',
                     instance_uuid=self.other, stash_id=self.stash_id + '\n')
        self.assertSafe()

    def test_malformed_stash_ids_on_release(self):
        """The same ids on the call that deletes: nothing deleted."""
        for bad in self._bad() + [self.stash_id + '\n']:
            self.refused(NO_STASH + RELEASE_REFUSED,
                         'release_console_log_stash',
                         instance_uuid=self.other, stash_id=bad, sha256s={})
        self.assertSafe()

    def test_stash_ids_of_wrong_types(self):
        """Numbers, lists and dicts as stash ids; None where one is due."""
        for bad in (0, 1.5, True, [self.stash_id], {'id': self.stash_id}):
            self.refused(INVALID, 'describe_console_log',
                         instance_uuid=self.other, stash_id=bad)
            self.refused(INVALID, 'release_console_log_stash',
                         instance_uuid=self.other, stash_id=bad, sha256s={})
        self.refused(INVALID + RELEASE_REFUSED, 'release_console_log_stash',
                     instance_uuid=self.other, stash_id=None, sha256s={})
        self.assertSafe()


class TestBadNumbers(HostileTestCase):

    BAD_OFFSETS = [-1, -2 ** 63, 2 ** 63, 2 ** 70, True, False, 1.0, 0.5,
                   1e308, '0', None, [0], {'offset': 0}]
    BAD_LENGTHS = [0, -1, 2 ** 40, 2 ** 63, 2 ** 70, True, 1.5, '10', None,
                   [10]]

    def test_offsets_and_lengths_of_chunk_reads(self):
        """Negative, huge, bool, float, string offsets and lengths."""
        size = len(self.files['console.log.0'])
        common = dict(instance_uuid=self.uuid, name='console.log.0')
        self.each_refused(INVALID, 'read_console_log_chunk', 'offset',
                          self.BAD_OFFSETS + [size + 1], length=10, **common)
        self.each_refused(INVALID, 'read_console_log_chunk', 'length',
                          self.BAD_LENGTHS, offset=0, **common)
        self.assertSafe()

    def test_offsets_and_lengths_of_bulk_ranges(self):
        """The same on send_console_log_range: nothing reaches our queue."""
        forger = hostile.Forger()
        self.addCleanup(forger.close)
        queue = forger.own_queue()
        common = dict(instance_uuid=self.uuid, stash_id=None,
                      name='console.log.0', reply_queue=queue,
                      compression='none')
        self.each_refused(INVALID, 'send_console_log_range', 'offset',
                          self.BAD_OFFSETS, version='1.2', length=4096,
                          **common)
        self.each_refused(INVALID, 'send_console_log_range', 'length',
                          self.BAD_LENGTHS, version='1.2', offset=0,
                          **common)
        time.sleep(0.5)
        self.assertEqual([], forger.drain(queue))
        self.assertSafe()

    def test_describe_options_of_wrong_types(self):
        """tail_bytes and checksums out of range or of the wrong type."""
        self.each_refused(INVALID, 'describe_console_log', 'tail_bytes',
                          [-1, 2 ** 40, True, 1.5, '1', None, [1]],
                          instance_uuid=self.uuid)
        self.each_refused(INVALID, 'describe_console_log', 'checksums',
                          ['yes', 1, 0, None, [], {}],
                          instance_uuid=self.uuid)
        self.each_refused(INVALID, 'list_console_log_stashes', 'checksums',
                          ['true', 1], instance_uuid=self.other)
        self.assertSafe()

    def test_unknown_compression(self):
        """Compression names nobody defined, and wrong types."""
        bad = ['gzip', 'ZLIB', 'zlib\n', 'zlib ', '', 'bz2', 1, True,
               ['zlib'], {'zlib': 1}]
        self.each_refused(INVALID, 'read_console_log_chunk', 'compression',
                          bad, version='1.1', instance_uuid=self.uuid,
                          name='console.log.0', offset=0, length=100)
        forger = hostile.Forger()
        self.addCleanup(forger.close)
        queue = forger.own_queue()
        self.each_refused(INVALID, 'send_console_log_range', 'compression',
                          bad + [None], version='1.2',
                          instance_uuid=self.uuid, stash_id=None,
                          name='console.log.0', offset=0, length=4096,
                          reply_queue=queue)
        time.sleep(0.5)
        self.assertEqual([], forger.drain(queue))
        self.assertSafe()

    def test_release_with_malformed_checksums(self):
        """sha256s that are not a map of names to digests, or incomplete."""
        described = _object_data(self.call(
            'describe_console_log', instance_uuid=self.other,
            stash_id=self.stash_id, checksums=True))
        good = {_object_data(f)['name']: _object_data(f)['sha256']
                for f in described['files']}
        for bad in (None, [], 'x', [list(good.items())], {1: 'x'},
                    {'console.log': None}, {},
                    dict(good, **{'console.log.7': '0' * 64}),
                    dict(good, **{'console.log': '0' * 64}),
                    {'../secret': '0' * 64}):
            self.refused((exception.InvalidInput, exception.ChecksumMismatch)
                         + RELEASE_REFUSED, 'release_console_log_stash',
                         instance_uuid=self.other, stash_id=self.stash_id,
                         sha256s=bad)
        self.assertSafe()


class TestBulkReplyQueues(HostileTestCase):
    """send_console_log_range publishes to a queue the caller names."""

    def _send(self, errors, reply_queue):
        return self.refused(errors, 'send_console_log_range', version='1.2',
                            instance_uuid=self.uuid, stash_id=None,
                            name='console.log.0', offset=0, length=8192,
                            reply_queue=reply_queue, compression='none')

    def test_queue_name_with_a_trailing_newline(self):
        """``consolelog-bulk-<32 hex>\\n``: ``$`` matches before a newline.

        The queue without the newline is ours: nothing may reach it.
        """
        forger = hostile.Forger()
        self.addCleanup(forger.close)
        queue = forger.own_queue()
        self._send(INVALID, queue + '\n')
        time.sleep(0.5)
        self.assertEqual([], forger.drain(queue))
        self.assertSafe()

    def test_queue_that_does_not_exist(self):
        """A well-formed name nobody declared: an error, nothing published.

        Published to a queue that does not exist, every byte of the window
        goes to nowhere (and a repeated call repeats it).
        """
        queue = hostile.bulk_queue_name()
        self._send(TYPED, queue)
        forger = hostile.Forger()
        self.addCleanup(forger.close)
        self.assertFalse(forger.queue_exists(queue))
        listed = subprocess.run(['rabbitmqctl', 'list_queues', '-q', 'name',
                                 'messages'], capture_output=True, text=True,
                                timeout=60)
        self.assertNotIn(queue, listed.stdout)
        self.assertSafe()

    def test_queues_of_other_kinds(self):
        """An oslo.messaging reply queue seen on the bus, and other names.

        The sniffer sees this client's own reply queue ``reply_<hex>`` in
        every request; the endpoint's own queues, wildcards and near-miss
        names must be refused as well.
        """
        sniffer = hostile.Sniffer(self.topic).start()
        self.addCleanup(sniffer.stop)
        self.assertServing()
        seen = sniffer.wait_for(lambda r: r.get('_reply_q'))
        self.assertIsNotNone(seen, 'the sniffer saw no request')
        reply_q = seen['_reply_q']
        self.assertTrue(reply_q.startswith('reply_'), reply_q)
        hexpart = uuid.uuid4().hex
        for name in (reply_q, self.topic, '%s.src' % self.topic,
                     sniffer.queue_name, 'amq.rabbitmq.reply-to',
                     'consolelog-bulk-' + hexpart.upper(),
                     'consolelog-bulk-' + hexpart[:31],
                     'consolelog-bulk-' + hexpart + '0',
                     'consolelog-bulk-' + hexpart + '.x',
                     ' consolelog-bulk-' + hexpart, '\nconsolelog-bulk-' +
                     hexpart, 'consolelog-bulk-#', 'consolelog-bulk-*', '#',
                     '*', ''):
            self._send(INVALID, name)
        self.assertEqual([], sniffer.errors)
        self.assertSafe()

    def test_queue_names_of_wrong_types(self):
        """None, numbers, lists and dicts as the reply queue."""
        queue = hostile.bulk_queue_name()
        for bad in (None, 1, True, [queue], {'queue': queue}):
            self._send(INVALID, bad)
        self.assertSafe()


class TestRelease(HostileTestCase):
    """Deleting a stash is the one state change a peer can ask for."""

    def _checksums(self):
        described = _object_data(self.call(
            'describe_console_log', instance_uuid=self.other,
            stash_id=self.stash_id, checksums=True))
        return {_object_data(f)['name']: _object_data(f)['sha256']
                for f in described['files']}

    def assertStashKept(self):
        path = os.path.join(self.stash_root, self.other, self.stash_id)
        self.assertTrue(os.path.isdir(path), path)

    def refused_release(self, sha256s, token, puller='dst'):
        """A 1.3 release of the stash by ``puller`` with ``token``: refused."""
        self.refused(RELEASE_REFUSED, 'release_console_log_stash',
                     version='1.3', instance_uuid=self.other,
                     stash_id=self.stash_id, sha256s=sha256s,
                     transfer_token=token, puller_host=puller)

    def test_release_with_describe_checksums_and_no_token(self):
        """The checksums describe hands anyone are no proof of a pull."""
        sha256s = self._checksums()
        self.refused(RELEASE_REFUSED, 'release_console_log_stash',
                     instance_uuid=self.other, stash_id=self.stash_id,
                     sha256s=sha256s)
        self.refused_release(sha256s, None)
        self.assertStashKept()
        self.assertSafe()

    def test_release_with_a_made_up_token(self):
        """A token of the right form that nobody handed out."""
        sha256s = self._checksums()
        for token in (uuid.uuid4().hex, '0' * 32, '', 'x' * 4096, 1, None,
                      ['0' * 32]):
            self.refused_release(sha256s, token)
        self.assertStashKept()
        self.assertSafe()

    def test_release_with_the_token_of_another_puller(self):
        """A token handed to ``dst``, replayed by a host claiming ``evil``.

        Then ``dst`` itself releases with it: the refusal was about the
        puller, not a release that never works.
        """
        opened = self.call('open_console_log_transfer', version='1.3',
                           instance_uuid=self.other, stash_id=self.stash_id,
                           puller_host='dst')
        token = _object_data(opened)['transfer_token']
        self.assertRegex(token, r'\A[0-9a-f]{32}\Z')
        self.mark()
        # What the puller installed: the roots of the hash lists.
        data = _object_data(opened)
        sha256s = {}
        for f in data['files']:
            f = _object_data(f)
            sha256s[f['name']] = hashlist.root(f['size'], data['block_size'],
                                               f['blocks'])
        for puller in ('evil', None, 'dst ', 'DST', '*'):
            self.refused_release(sha256s, token, puller)
        self.assertStashKept()
        self.assertSafe()
        self.assertTrue(self.call(
            'release_console_log_stash', version='1.3',
            instance_uuid=self.other, stash_id=self.stash_id,
            sha256s=sha256s, transfer_token=token, puller_host='dst'))
        self.assertFalse(os.path.exists(os.path.join(
            self.stash_root, self.other, self.stash_id)))

    def test_open_transfer_with_bad_input(self):
        """open_console_log_transfer: bad ids, hosts with wildcards."""
        common = dict(instance_uuid=self.other, stash_id=self.stash_id)
        for host in ('*', '#', 'a#', 'a b', 'x\n', '', None, 1, ['dst'],
                     'h' * 300):
            self.refused(INVALID, 'open_console_log_transfer', version='1.3',
                         **dict(common, puller_host=host))
        for stash_id in ('../x', 'x' * 65, 'a/b', 1):
            self.refused(INVALID, 'open_console_log_transfer', version='1.3',
                         instance_uuid=self.other, stash_id=stash_id,
                         puller_host='dst')
        self.refused(INVALID, 'open_console_log_transfer', version='1.3',
                     instance_uuid='../' + self.other, stash_id=None,
                     puller_host='dst')
        self.assertSafe()


class TestFilesystemTraps(HostileTestCase):
    """What a call finds on disk is not to be trusted either."""

    def test_symlinked_instance_directory(self):
        """``<instances>/<uuid>`` is a link to a directory elsewhere."""
        instance = str(uuid.uuid4())
        os.symlink(self.outside_chain('linked-instance'),
                   os.path.join(self.instances, instance))
        self.mark()
        self.refused(REFUSED_DIR, 'describe_console_log',
                     instance_uuid=instance, tail_bytes=1000)
        self.refused(REFUSED_DIR, 'read_console_log_chunk',
                     instance_uuid=instance, name='console.log', offset=0,
                     length=100)
        self.assertSafe()

    def test_symlinked_stash_directory(self):
        """``<stash>/<uuid>/<stash id>`` is a link to a directory elsewhere."""
        target = self.outside_chain('linked-stash')
        with open(os.path.join(target, 'manifest.json'), 'w') as f:
            json.dump({'stash_id': 'linked', 'created': 1.0}, f)
        os.symlink(target, os.path.join(self.stash_root, self.other,
                                        'linked'))
        self.mark()
        self.refused(REFUSED_DIR, 'describe_console_log',
                     instance_uuid=self.other, stash_id='linked',
                     tail_bytes=1000)
        self.refused(REFUSED_DIR, 'read_console_log_chunk',
                     instance_uuid=self.other, stash_id='linked',
                     name='console.log', offset=0, length=100)
        self.refused(REFUSED_DIR + RELEASE_REFUSED,
                     'release_console_log_stash', instance_uuid=self.other,
                     stash_id='linked', sha256s={})
        listed = self.call('list_console_log_stashes',
                           instance_uuid=self.other, tail_bytes=1000)
        # The real stash's own bytes are the other instance's: fine here.
        self.assertClean(listed, [self.secret_mark])
        self.assertEqual([self.stash_id], [_object_data(s)['stash_id']
                                           for s in listed])
        self.assertSafe()

    def test_symlinked_stash_instance_directory(self):
        """``<stash>/<uuid>`` itself is a link to a directory elsewhere."""
        instance = str(uuid.uuid4())
        parent = os.path.join(self.outside, 'linked-parent')
        os.makedirs(parent)
        os.rename(self.outside_chain('linked-parent-stash'),
                  os.path.join(parent, 'stash1'))
        with open(os.path.join(parent, 'stash1', 'manifest.json'), 'w') as f:
            json.dump({'stash_id': 'stash1', 'created': 1.0}, f)
        os.symlink(parent, os.path.join(self.stash_root, instance))
        self.mark()
        self.refused(REFUSED_DIR, 'describe_console_log',
                     instance_uuid=instance, stash_id='stash1',
                     tail_bytes=1000)
        self.refused(REFUSED_DIR, 'read_console_log_chunk',
                     instance_uuid=instance, stash_id='stash1',
                     name='console.log', offset=0, length=100)
        self.refused(REFUSED_DIR + RELEASE_REFUSED,
                     'release_console_log_stash', instance_uuid=instance,
                     stash_id='stash1', sha256s={})
        try:
            listed = self.call('list_console_log_stashes',
                               instance_uuid=instance, tail_bytes=1000)
        except REFUSED_DIR:
            pass
        else:
            self.assertEqual([], listed)
        self.assertSafe()

    def test_symlinked_chain_files(self):
        """Members that are links: to a secret, to another instance."""
        instance, directory = self.new_instance()
        os.symlink(self.secret, os.path.join(directory, 'console.log.0'))
        os.symlink(os.path.join(self.instances, self.other, 'x'),
                   os.path.join(directory, 'console.log.1'))
        self.mark()
        self.refused((exception.UnsafeChainFile,), 'describe_console_log',
                     instance_uuid=instance, tail_bytes=10000)
        self.refused((exception.UnsafeChainFile,), 'read_console_log_chunk',
                     instance_uuid=instance, name='console.log.0', offset=0,
                     length=100)
        self.assertSafe()

    def test_members_that_are_not_files(self):
        """A member that is a directory, a link to a device, a file as dir."""
        instance, directory = self.new_instance()
        os.mkdir(os.path.join(directory, 'console.log.0'))
        os.symlink('/dev/zero', os.path.join(directory, 'console.log.1'))
        not_a_dir = str(uuid.uuid4())
        with open(os.path.join(self.instances, not_a_dir), 'wb') as f:
            f.write(self.secret_mark)
        self.mark()
        self.refused((exception.UnsafeChainFile,), 'read_console_log_chunk',
                     instance_uuid=instance, name='console.log.0', offset=0,
                     length=100)
        self.refused((exception.UnsafeChainFile,), 'read_console_log_chunk',
                     instance_uuid=instance, name='console.log.1', offset=0,
                     length=100)
        self.refused(REFUSED_DIR + (exception.ChainFileUnreadable,),
                     'describe_console_log', instance_uuid=not_a_dir,
                     tail_bytes=100)
        self.assertSafe()

    def _fifo(self, path):
        os.mkfifo(path)

        def unblock():
            # A reader still blocked in open() gets EOF and goes on.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return
            os.close(fd)
        self.addCleanup(unblock)

    def test_fifo_as_console_log(self):
        """A FIFO where console.log should be: answered, never blocked."""
        instance, directory = self.new_instance({'console.log.0': b'x\n'})
        self._fifo(os.path.join(directory, 'console.log'))
        self.mark()
        started = time.monotonic()
        self.refused((exception.UnsafeChainFile,), 'describe_console_log',
                     timeout=QUICK, instance_uuid=instance, tail_bytes=100)
        self.refused((exception.UnsafeChainFile,), 'read_console_log_chunk',
                     timeout=QUICK, instance_uuid=instance,
                     name='console.log', offset=0, length=100)
        self.assertLess(time.monotonic() - started, QUICK)
        self.assertSafe()

    def test_fifo_as_a_stash_manifest(self):
        """A FIFO as manifest.json: describe and list answer quickly.

        A blocked open would hold the host's hand-over lock for good.
        """
        manifest = os.path.join(self.stash_root, self.other, self.stash_id,
                                'manifest.json')
        os.unlink(manifest)
        self._fifo(manifest)
        self.mark()
        for method, kwargs in (
                ('describe_console_log', dict(stash_id=self.stash_id)),
                ('list_console_log_stashes', {})):
            started = time.monotonic()
            try:
                reply = self.call(method, timeout=QUICK,
                                  instance_uuid=self.other, **kwargs)
            except exception.ConsoleLogError as e:
                self.assertClean(str(e))
            else:
                self.assertClean(reply)
            self.assertLess(time.monotonic() - started, QUICK)
        self.assertSafe()

    def test_huge_stash_manifest(self):
        """A 128 MiB manifest.json: refused or ignored, never read whole."""
        manifest = os.path.join(self.stash_root, self.other, self.stash_id,
                                'manifest.json')
        with open(manifest, 'wb') as f:
            f.write(b'{"stash_id": "%s", "created": 1.0, "pad": "' %
                    self.stash_id.encode())
            block = b'x' * MiB
            for _ in range(128):
                f.write(block)
            f.write(b'"}')
        self.mark()
        growth = self.peak()
        started = time.monotonic()
        for method, kwargs in (
                ('describe_console_log', dict(stash_id=self.stash_id)),
                ('list_console_log_stashes', {})):
            try:
                reply = self.call(method, timeout=QUICK * 2,
                                  instance_uuid=self.other, **kwargs)
            except exception.ConsoleLogError as e:
                self.assertClean(str(e))
            else:
                self.assertClean(reply)
        seconds = time.monotonic() - started
        grown = growth()
        self.record('huge-manifest', 'peak RSS +%.1f MiB, %.2f s' % (
            grown / MiB, seconds))
        self.assertLess(grown, 32 * MiB)
        self.assertLess(seconds, QUICK)
        self.assertSafe()

    def test_manifest_that_is_a_link(self):
        """manifest.json linked to a file elsewhere: never followed."""
        decoy = os.path.join(self.outside, 'decoy.json')
        with open(decoy, 'w') as f:
            json.dump({'stash_id': self.stash_id, 'created': 1.0,
                       'log_name': 'secret',
                       'live_names': [self.secret_mark.decode()]}, f)
        manifest = os.path.join(self.stash_root, self.other, self.stash_id,
                                'manifest.json')
        os.unlink(manifest)
        os.symlink(decoy, manifest)
        self.mark()
        try:
            reply = self.call('describe_console_log', instance_uuid=self.other,
                              stash_id=self.stash_id, timeout=QUICK)
        except exception.ConsoleLogError as e:
            self.assertClean(str(e))
        else:
            self.assertClean(reply)
        self.assertSafe()


class TestFloods(HostileTestCase):
    """Sizes from the wire must not decide the endpoint's memory."""

    SERVE = {'chunk_size': 64 * KiB}

    def test_sixteen_mib_arguments(self):
        """A 16 MiB string in each argument that takes a string.

        The transport alone (AMQP frames, two JSON decodes) holds a few
        copies of any message: that floor is measured first with a call of
        a method nobody has. The endpoint may add at most four more copies
        (it must not repr, format, log or send back the argument).
        """
        big = '../' * (16 * MiB // 3)
        floor = self.peak()
        self.refused(UNDOCUMENTED, 'no_such_method', timeout=60, junk=big)
        floor = floor()
        calls = [
            ('1.0', 'describe_console_log', dict(instance_uuid=big)),
            ('1.0', 'list_console_log_stashes', dict(instance_uuid=big)),
            ('1.0', 'read_console_log_chunk',
             dict(instance_uuid=self.uuid, name=big, offset=0, length=10)),
            ('1.0', 'describe_console_log',
             dict(instance_uuid=self.other, stash_id=big)),
            ('1.0', 'release_console_log_stash',
             dict(instance_uuid=self.other, stash_id=big, sha256s={})),
            ('1.2', 'send_console_log_range',
             dict(instance_uuid=self.uuid, stash_id=None,
                  name='console.log.0', offset=0, length=10,
                  reply_queue=big, compression='none')),
        ]
        self.record('sixteen-mib-floor', 'peak RSS +%.1f MiB' % (
            floor / MiB))
        for version, method, kwargs in calls:
            growth = self.peak()
            try:
                self.refused(TYPED, method, version=version, timeout=60,
                             **kwargs)
            finally:
                grown = growth()
                self.record('sixteen-mib-%s' % method,
                            'peak RSS +%.1f MiB' % (grown / MiB))
            self.assertLess(grown, floor + 4 * 16 * MiB)
        self.assertSafe()

    def test_flood_of_200_concurrent_good_and_bad_requests(self):
        """200 requests at once, half good, half hostile: all answered.

        Good ones get the right bytes, bad ones a typed error; the peak RSS
        of the serve process grows by less than 64 MiB.
        """
        files = {'console.log.0': random.Random(7).randbytes(2 * MiB),
                 'console.log': b'tail\n' * 1000}
        instance, _directory = self.new_instance(files)
        self.mark()
        rnd = random.Random(10)
        jobs = []
        for i in range(200):
            if i % 2 == 0:
                offset = rnd.randrange(0, 2 * MiB - 64 * KiB)
                jobs.append(('good-read', dict(
                    version='1.1', method='read_console_log_chunk',
                    instance_uuid=instance, name='console.log.0',
                    offset=offset, length=64 * KiB, compression='zlib'),
                    files['console.log.0'][offset:offset + 64 * KiB]))
            elif i % 10 == 1:
                jobs.append(('good-describe', dict(
                    method='describe_console_log', instance_uuid=instance,
                    tail_bytes=64 * KiB), None))
            else:
                bad = [
                    dict(method='read_console_log_chunk',
                         instance_uuid=instance, name='../' * 1000, offset=0,
                         length=10),
                    dict(method='describe_console_log',
                         instance_uuid='x' * (64 * KiB)),
                    dict(method='read_console_log_chunk',
                         instance_uuid=instance, name='console.log.0',
                         offset=-1, length=2 ** 40),
                    dict(method='_lock', shared=False),
                    dict(method='__init__', conf=None, host='evil'),
                    dict(method='describe_console_log', version='9.0',
                         instance_uuid=instance),
                    dict(method='release_console_log_stash',
                         instance_uuid=self.other, stash_id='x' * 65,
                         sha256s={}),
                    dict(method='describe_console_log',
                         instance_uuid=self.other, stash_id='../' * 100),
                ][i % 8]
                jobs.append(('bad', bad, None))
        growth = self.peak()

        def one(job):
            kind, kwargs, expected = job
            kwargs = dict(kwargs)
            method = kwargs.pop('method')
            version = kwargs.pop('version', '1.0')
            try:
                reply = self.raw.call('src', method, version=version,
                                      timeout=120, **kwargs)
            except Exception as e:
                return kind, e, expected
            return kind, reply, expected
        with concurrent.futures.ThreadPoolExecutor(200) as pool:
            results = list(pool.map(one, jobs))
        grown = growth()
        self.record('flood-peak', 'serve peak RSS +%.1f MiB (VmHWM %.1f '
                    'MiB) over 200 concurrent requests' % (
                        grown / MiB,
                        hostile.memory(self.src.proc.pid)[0] / MiB))
        for kind, outcome, expected in results:
            if kind == 'bad':
                self.assertIsInstance(outcome, TYPED, outcome)
                self.assertLess(len(str(outcome)), MAX_ERROR)
                self.assertClean(str(outcome))
            elif kind == 'good-read':
                self.assertNotIsInstance(outcome, Exception)
                self.assertEqual(expected, _chunk_bytes(outcome))
            else:
                self.assertNotIsInstance(outcome, Exception)
                self.assertEqual(
                    sorted((n, len(d)) for n, d in files.items()),
                    sorted((_object_data(f)['name'], _object_data(f)['size'])
                           for f in _object_data(outcome)['files']))
        self.assertLess(grown, FLOOD_MEMORY)
        self.assertSafe()


class TestFrameInjection(test_pull.PullTestCase):
    """Frames published into a real puller's bulk queue by a third party.

    The destination is this process (``transfer.pull``), the source a real
    ``nova-consolelog serve``, the bulk channel on. The sniffer sees each
    ``send_console_log_range`` request (its reply queue and, from RPC 1.3
    on, its request token) and the attacker answers it first: the source is
    stopped (SIGSTOP) while the forged frames go out. Whatever is forged,
    the pull completes, the installed history is the source chain byte for
    byte, and no forged byte is anywhere on the destination.
    """

    CHUNK = 64 * KiB
    WINDOW = 256 * KiB

    def setUp(self):
        super().setUp()
        self.forged_mark = b'HOSTILE-FORGED-%s' % uuid.uuid4().hex.encode()
        self.files = {
            'console.log.1': random.Random(1).randbytes(MiB + 77),
            'console.log.0': test_pull.text_bytes(MiB, 2),
            'console.log': random.Random(3).randbytes(300 * KiB)}

    def start(self, stash=False):
        self.instance, self.stash_id = self.make_source(
            self.files, stash=stash, chunk_size=self.CHUNK,
            bulk_window=self.WINDOW)
        self.forger = hostile.Forger()
        self.addCleanup(self.forger.close)
        self.conf, self.rpcapi = self.client(
            chunk_size=self.CHUNK, bulk_window=self.WINDOW, rpc_timeout=10,
            pull_retries=5, pull_timeout=240)
        self.assertTrue(self.rpcapi.bulk_supported('src'))
        # The source's files as they are on its disk, before a release.
        source = os.path.join(
            self.src.conf.consolelog.stash_path, self.instance,
            self.stash_id) if stash else os.path.join(
                self.src.conf.consolelog.instances_path, self.instance)
        self.source_bytes = b''
        for name in ('console.log.1', 'console.log.0', 'console.log'):
            with open(os.path.join(source, name), 'rb') as f:
                self.source_bytes += f.read()
        self.assertEqual(test_fixtures.chain_bytes(self.files),
                         self.source_bytes)

    def attack(self, forge):
        """Run ``forge(request)`` for every bulk request of the victim."""
        attacked = []

        def on_request(request):
            args = request.get('args', {})
            if (request.get('method') != 'send_console_log_range' or
                    args.get('instance_uuid') != self.instance):
                return
            os.kill(self.src.proc.pid, signal.SIGSTOP)
            try:
                forge(request)
                attacked.append(request)
            finally:
                os.kill(self.src.proc.pid, signal.SIGCONT)
        sniffer = hostile.Sniffer(self.topic, on_request=on_request).start()
        self.addCleanup(sniffer.stop)
        return sniffer, attacked

    def chunks(self, args):
        """(offset, size, eof) of the chunks the source sends for a range."""
        size = len(self.files[args['name']])
        end = min(args['offset'] + min(args['length'], self.WINDOW), size)
        pos = args['offset']
        while pos < end:
            n = min(self.CHUNK, end - pos)
            yield pos, n, pos + n >= size
            pos += n

    def forged(self, n):
        return (self.forged_mark + b'\n' * n)[:n]

    def copied_headers(self, args):
        """The request's binding, as a 1.3 source puts it in its frames."""
        extra = {'instance_uuid': args['instance_uuid'],
                 'stash_id': args.get('stash_id')}
        if args.get('request_token') is not None:
            extra['token'] = args['request_token']
        return extra

    def pull_and_check(self, sniffer, attacked, marks):
        chain = self.dest_chain(self.conf, self.instance)
        result = transfer.pull(self.conf, self.rpcapi, 'src', self.instance,
                               stash_id=self.stash_id, chain=chain)
        self.assertEqual([], sniffer.errors)
        self.assertNotEqual([], attacked, 'no bulk request was attacked')
        self.assertGreater(self.forger.published, 0)
        # Byte for byte the source's chain, as read from the source's files.
        self.assertEqual(hashlib.sha256(self.source_bytes).hexdigest(),
                         hashlib.sha256(self.history(chain)).hexdigest())
        dest = self.conf.consolelog.instances_path
        for top, _dirs, names in os.walk(dest):
            for name in names:
                path = os.path.join(top, name)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                with open(path, 'rb') as f:
                    data = f.read()
                for mark in marks:
                    self.assertNotIn(mark, data, path)
        return result

    def test_random_headers(self):
        """(a) Frames with random, missing and ill-typed headers."""
        self.start()
        rnd = random.Random(5)
        mark = self.forged_mark

        def forge(request):
            args = request['args']
            queue = args['reply_queue']
            for offset, size, eof in self.chunks(args):
                junk = self.forged(size)
                for headers in (
                        {},
                        {'name': args['name']},
                        {'name': args['name'], 'offset': offset,
                         'length': size},
                        {'name': args['name'], 'offset': str(offset),
                         'length': size, 'sha256': 'x',
                         'data_compression': 'none', 'eof': eof},
                        {'name': args['name'], 'offset': offset,
                         'length': size, 'sha256': '0' * 64,
                         'data_compression': 'none', 'eof': eof},
                        {'name': args['name'], 'offset': offset + 1,
                         'length': size - 1,
                         'sha256': hashlib.sha256(junk[1:]).hexdigest(),
                         'data_compression': 'none', 'eof': eof},
                        {'name': args['name'], 'offset': -offset - 1,
                         'length': -1, 'sha256': None,
                         'data_compression': 'none', 'eof': 'yes'},
                        {'name': '../' + args['name'], 'offset': offset,
                         'length': size,
                         'sha256': hashlib.sha256(junk).hexdigest(),
                         'data_compression': 'none', 'eof': eof},
                        {'name': args['name'], 'offset': offset,
                         'length': 2 ** 62,
                         'sha256': hashlib.sha256(junk).hexdigest(),
                         'data_compression': 'gzip', 'eof': eof},
                        {'name': rnd.randbytes(8).hex(),
                         'offset': rnd.randrange(2 ** 31),
                         'length': rnd.randrange(2 ** 31),
                         'sha256': rnd.randbytes(32).hex(),
                         'data_compression': 'zlib', 'eof': True}):
                    self.forger.publish(queue, mark + rnd.randbytes(size),
                                        headers)
                # An empty frame that claims the end of the file here.
                self.forger.frame(queue, args['name'], offset, b'', eof=True,
                                  **self.copied_headers(args))
        sniffer, attacked = self.attack(forge)
        self.pull_and_check(sniffer, attacked, [mark])

    def forge_with_copied_headers(self, request):
        """Frames with the request's headers, forged bytes, their sha256."""
        args = request['args']
        for offset, size, eof in self.chunks(args):
            self.forger.frame(args['reply_queue'], args['name'], offset,
                              self.forged(size), eof=eof,
                              **self.copied_headers(args))

    def test_copied_headers_and_matching_sha256_on_a_live_pull(self):
        """(b) The request's own headers, other bytes, their true sha256.

        On a pull of the live chain there is no whole-file checksum from a
        stash manifest: only digests obtained over RPC can tell.
        """
        self.start()
        sniffer, attacked = self.attack(self.forge_with_copied_headers)
        self.pull_and_check(sniffer, attacked, [self.forged_mark])

    def test_copied_headers_and_matching_sha256_on_a_stash_pull(self):
        """(b) The same on a stash pull: caught, and the pull completes.

        A whole-file digest that catches the forgery only at the end, and
        then fails the pull, lets any third party stop a hand-over for good.
        """
        self.start(stash=True)
        sniffer, attacked = self.attack(self.forge_with_copied_headers)
        result = self.pull_and_check(sniffer, attacked, [self.forged_mark])
        self.assertTrue(result.released)

    def test_compressed_frame_that_inflates_past_its_length(self):
        """A 256 KiB zlib frame that inflates to 256 MiB, headers copied.

        The puller may inflate at most the declared length: its peak RSS
        grows by less than 64 MiB.
        """
        packer = zlib.compressobj(9)
        block = bytes(MiB)
        bomb = b''.join(packer.compress(block) for _ in range(256))
        bomb += packer.flush()
        del block
        self.start()

        def forge(request):
            args = request['args']
            for offset, size, eof in self.chunks(args):
                self.forger.frame(args['reply_queue'], args['name'], offset,
                                  bytes(size), eof=eof, body=bomb,
                                  compression='zlib',
                                  **self.copied_headers(args))
        sniffer, attacked = self.attack(forge)
        growth = self.peak_of_this_process()
        self.pull_and_check(sniffer, attacked, [])
        grown = growth()
        self.addDetail('bomb-peak', testtools.content.text_content(
            'puller peak RSS +%.1f MiB' % (grown / MiB)))
        self.assertLess(grown, 64 * MiB)

    def peak_of_this_process(self):
        pid = os.getpid()
        hostile.reset_peak(pid)
        start = hostile.memory(pid)[1]
        return lambda: hostile.memory(pid)[0] - start

    def test_real_source_sends_another_instance_into_the_victims_queue(self):
        """(c) Ask the real source to send other bytes to the victim.

        For every bulk request of the victim the attacker asks the source,
        with the raw client, for the same file, offset and length of
        another instance (same names and sizes, other bytes) into the
        victim's reply queue, with the victim's request token, for this
        window and the next.
        """
        self.start()
        other = str(uuid.uuid4())
        other_mark = b'HOSTILE-OTHER-%s' % uuid.uuid4().hex.encode()
        test_fixtures.write_chain(self.src.conf, other, {
            name: (other_mark + b'\n' * len(data))[:len(data)]
            for name, data in self.files.items()})
        raw = hostile.RawClient(self.topic)
        self.addCleanup(raw.close)

        def forge(request):
            args = request['args']
            token = args.get('request_token')
            for offset in (args['offset'], args['offset'] + args['length']):
                kwargs = dict(args, instance_uuid=other, offset=offset)
                version = '1.2'
                if token is not None:
                    version = '1.3'
                    kwargs['request_token'] = token
                raw.cast('src', 'send_console_log_range', version=version,
                         **kwargs)
                self.forger.published += 1
        sniffer, attacked = self.attack(forge)
        self.pull_and_check(sniffer, attacked, [other_mark])


class TestServeHostNames(base.FunctionalTestCase):

    def test_serve_refuses_wildcard_and_malformed_host_names(self):
        """``serve --host`` with AMQP wildcards, spaces or a newline.

        A host name is a routing key: ``*`` or ``#`` would take calls meant
        for other hosts. Each must exit 2 with one clear line, never serve.
        """
        host = base.HostProcess(self.root, 'cfg', self.topic)
        procs = {}
        for name in ('*', '#', 'a#', 'a.*', 'a b', 'x\n', '\n'):
            procs[name] = subprocess.Popen(
                [sys.executable, '-m', 'nova_consolelog.cmd.main',
                 '--config-file', host.config_file, 'serve', '--host', name,
                 '--transport-url', base.TRANSPORT_URL],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=base.REPO)
        outcomes = {}
        deadline = time.monotonic() + 30
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(
                    timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                outcomes[name] = ('still running', out[-300:])
                continue
            outcomes[name] = (proc.returncode, err[-300:])
        for name, (code, text) in outcomes.items():
            self.assertEqual(2, code, '%r: %r' % (name, text))
            self.assertNotIn(b'Traceback', text)
            self.assertNotEqual(b'', text.strip(), name)
