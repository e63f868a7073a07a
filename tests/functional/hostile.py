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

"""A hostile peer on nova's bus, for the hostile-peer functional suite.

Everything here is what any holder of the RabbitMQ credentials can do
(DESIGN.md fact 12), built without our own client code, so that nothing
our client checks or adds protects the endpoint:

* ``RawClient``: an oslo.messaging RPC client with no serializer and no
  version cap that calls any method name with any arguments on the
  console-log target (``[consolelog] topic``, ``server=<host>``,
  namespace ``consolelog``, any version);
* ``Sniffer``: a queue of its own bound to nova's control exchange (a topic
  exchange named ``nova``) with the routing keys ``<topic>`` and
  ``<topic>.<server>``, so it gets a copy of every request to the endpoint,
  reply queue names and request tokens included;
* ``Forger``: publishes arbitrary bytes with arbitrary headers into any
  queue through the default exchange (routing key = queue name), the way
  rpc/bulk.py's frames travel.

And what the tests need to judge an attack: ``tree`` (a snapshot of every
path under a directory) and the peak memory of a process.
"""

import hashlib
import json
import os
import stat
import threading
import time
import urllib.parse
import uuid

import kombu
import oslo_messaging


from tests import fixtures as test_fixtures
from tests.functional import base

# nova's control exchange: the default of every service on nova's bus, and
# what nova-consolelog's transport defaults to (rpc/transport.py).
CONTROL_EXCHANGE = 'nova'
NAMESPACE = 'consolelog'
# The documented calls of RPC 1.3, and nothing else.
DOCUMENTED = frozenset([
    'describe_console_log',
    'list_console_log_stashes',
    'read_console_log_chunk',
    'send_console_log_range',
    'release_console_log_stash',
    'open_console_log_transfer',
])
# Modules whose exceptions come back as their class: ours and the
# dispatcher's (NoSuchMethod, UnsupportedVersion). Anything else arrives as
# a RemoteError, which no hostile case may produce.
EXMODS = ['nova_consolelog.exception', 'oslo_messaging.rpc.dispatcher']
BULK_PREFIX = 'consolelog-bulk-'


def kombu_url(transport_url=None):
    """The amqp:// URL kombu needs for an oslo.messaging rabbit:// URL."""
    parsed = urllib.parse.urlsplit(transport_url or base.TRANSPORT_URL)
    vhost = parsed.path[1:] or '/'
    return 'amqp://%s/%s' % (parsed.netloc,
                             urllib.parse.quote(vhost, safe=''))


def bulk_queue_name():
    return BULK_PREFIX + uuid.uuid4().hex


class RawClient:
    """An oslo.messaging client of a third party: no serializer, no cap.

    Requests carry exactly what the caller gives: any method name, any
    keyword arguments (JSON types only), any version, any namespace.
    Replies arrive as plain JSON (object primitives stay dicts).
    """

    def __init__(self, topic, transport_url=None, timeout=30):
        # oslo.messaging 18 needs its tracing and metrics groups on a
        # private ConfigOpts (DESIGN.md fact 7).
        conf = test_fixtures.new_conf(messaging=True, project='hostile')
        self.timeout = timeout
        self.transport = oslo_messaging.get_rpc_transport(
            conf, url=transport_url or base.TRANSPORT_URL,
            allowed_remote_exmods=list(EXMODS))
        self.client = oslo_messaging.get_rpc_client(
            self.transport,
            oslo_messaging.Target(exchange=CONTROL_EXCHANGE, topic=topic,
                                  namespace=NAMESPACE, version='1.0'),
            timeout=timeout)

    def _prepare(self, server, version, timeout, namespace):
        return self.client.prepare(server=server, version=version,
                                   timeout=timeout or self.timeout,
                                   namespace=namespace)

    def call(self, server, method, version='1.0', timeout=None,
             namespace=NAMESPACE, ctxt=None, **kwargs):
        return self._prepare(server, version, timeout, namespace).call(
            ctxt or {}, method, **kwargs)

    def cast(self, server, method, version='1.0', namespace=NAMESPACE,
             ctxt=None, **kwargs):
        self._prepare(server, version, None, namespace).cast(
            ctxt or {}, method, **kwargs)

    def close(self):
        self.transport.cleanup()


def parse_request(body):
    """The oslo.messaging request inside an AMQP message body, or None."""
    try:
        if isinstance(body, (bytes, bytearray)):
            body = body.decode('utf-8')
        if isinstance(body, str):
            body = json.loads(body)
        inner = body.get('oslo.message', body)
        if isinstance(inner, str):
            inner = json.loads(inner)
        if not isinstance(inner, dict) or 'method' not in inner:
            return None
        return inner
    except (ValueError, AttributeError):
        return None


class Sniffer:
    """Sees every request to the console-log endpoint of ``topic``.

    Binds an exclusive queue of its own to nova's control exchange with the
    routing keys of the topic (``<topic>``, ``<topic>.<server>``): the
    broker then copies every request of every caller to it. ``requests``
    holds the parsed requests (``method``, ``args``, ``version``,
    ``_reply_q`` ...); ``on_request`` is called for each, on the sniffer's
    thread, before the next is read. The exchange must exist (an endpoint
    of the topic has started).
    """

    def __init__(self, topic, on_request=None, transport_url=None):
        self.topic = topic
        self.on_request = on_request
        self.url = kombu_url(transport_url)
        self.queue_name = 'hostile-sniffer-%s' % uuid.uuid4().hex
        self.requests = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._conn = None

    def start(self):
        self._conn = kombu.Connection(self.url, connect_timeout=10)
        self._conn.ensure_connection(max_retries=3)
        channel = self._conn.channel()
        channel.queue_declare(self.queue_name, exclusive=True,
                              auto_delete=True)
        for key in (self.topic, self.topic + '.*'):
            channel.queue_bind(self.queue_name, CONTROL_EXCHANGE, key)
        queue = kombu.Queue(self.queue_name, channel=channel,
                            no_declare=True)
        self._consumer = kombu.Consumer(channel, queues=[queue],
                                        callbacks=[self._on_message],
                                        accept=None, auto_declare=False)
        self._consumer.consume()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='hostile-sniffer')
        self._thread.start()
        return self

    def _on_message(self, body, message):
        message.ack()
        request = parse_request(message.body)
        if request is None:
            return
        request['_routing_key'] = message.delivery_info.get('routing_key')
        with self._lock:
            self.requests.append(request)
        if self.on_request is not None:
            try:
                self.on_request(request)
            except Exception as e:  # reported by the test, never lost
                self.errors.append(e)

    def _run(self):
        while not self._stop.is_set():
            try:
                self._conn.drain_events(timeout=0.1)
            except TimeoutError:
                continue
            except Exception as e:
                if not self._stop.is_set():
                    self.errors.append(e)
                return

    def seen(self, method=None):
        with self._lock:
            return [r for r in self.requests
                    if method is None or r.get('method') == method]

    def wait_for(self, predicate, timeout=10):
        """The first request ``predicate`` accepts, or None at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.seen():
                if predicate(r):
                    return r
            time.sleep(0.02)
        return None

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # the connection is already broken
                pass


class Forger:
    """Publishes any body with any headers into any queue.

    Through the default exchange with the queue's name as routing key, as
    rpc/bulk.py publishes chunks: a queue's owner cannot tell these
    messages from the source's by where they came from.
    """

    def __init__(self, transport_url=None):
        self._conn = kombu.Connection(kombu_url(transport_url),
                                      connect_timeout=10)
        self._conn.ensure_connection(max_retries=3)
        self._producer = kombu.Producer(self._conn.channel(),
                                        exchange=kombu.Exchange(''),
                                        auto_declare=False)
        self._lock = threading.Lock()
        self.published = 0

    def publish(self, queue, body, headers=None):
        with self._lock:
            self._producer.publish(bytes(body), routing_key=queue,
                                   headers=headers or {},
                                   content_type='application/octet-stream',
                                   content_encoding='binary', retry=False)
            self.published += 1

    def frame(self, queue, name, offset, data, eof=False, compression='none',
              body=None, sha256=None, length=None, **extra):
        """A bulk frame as rpc/bulk.py builds it; ``extra`` adds headers."""
        headers = {'name': name, 'offset': offset,
                   'length': len(data) if length is None else length,
                   'sha256': sha256 or hashlib.sha256(data).hexdigest(),
                   'data_compression': compression, 'eof': eof}
        headers.update(extra)
        self.publish(queue, data if body is None else body, headers)

    def own_queue(self, name=None):
        """Declare a queue of ours (on this connection); its name.

        What a caller of send_console_log_range would declare; the tests
        look into it with ``drain``.
        """
        name = name or bulk_queue_name()
        with self._lock:
            self._conn.default_channel.queue_declare(name, exclusive=True,
                                                     auto_delete=True)
        return name

    def drain(self, queue):
        """Messages waiting in a queue of ours, taken off it."""
        taken = []
        with self._lock:
            channel = self._conn.default_channel
            while True:
                message = channel.basic_get(queue, no_ack=True)
                if message is None:
                    return taken
                taken.append((message.headers, message.body))

    def queue_exists(self, name):
        channel = self._conn.channel()
        try:
            channel.queue_declare(name, passive=True)
            return True
        except Exception:
            return False
        finally:
            try:
                channel.close()
            except Exception:  # closed by the broker's refusal
                pass

    def close(self):
        try:
            self._conn.release()
        except Exception:  # the connection is already broken
            pass


def _entry(path, st):
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return ('link', st.st_size, os.readlink(path))
    if stat.S_ISDIR(mode):
        return ('dir', 0, None)
    if stat.S_ISREG(mode):
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1024 * 1024), b''):
                digest.update(block)
        return ('file', st.st_size, digest.hexdigest())
    if stat.S_ISFIFO(mode):
        return ('fifo', 0, None)
    return ('other %o' % stat.S_IFMT(mode), st.st_size, None)


def tree(*roots):
    """``{path: (type, size, sha256 or link target)}`` under ``roots``.

    Never follows a link and never opens anything but regular files (a
    FIFO is listed, not read), so that it can look at the traps the tests
    plant. Each root is listed itself too.
    """
    result = {}
    for root in roots:
        if not os.path.lexists(root):
            result[root] = None
            continue
        result[root] = _entry(root, os.lstat(root))
        for top, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(top, name)
                try:
                    result[path] = _entry(path, os.lstat(path))
                except FileNotFoundError:
                    result[path] = None
    return result


def memory(pid):
    """``(VmHWM, VmRSS)`` of process ``pid`` in bytes."""
    values = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmHWM', 'VmRSS'):
                values[key] = int(value.split()[0]) * 1024
    return values['VmHWM'], values['VmRSS']


def reset_peak(pid):
    """Reset ``VmHWM`` of ``pid`` to its current RSS (Linux >= 4.0)."""
    with open('/proc/%d/clear_refs' % pid, 'w') as f:
        f.write('5')
