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

"""The bulk channel of RPC 1.2: chunk bytes as raw AMQP messages.

Why: an oslo.messaging reply is base64 text inside JSON inside JSON,
encoded by the source and decoded by the destination under the GIL; on a
small host that CPU, not the broker, limits a pull to a fraction of what
the broker moves. RPC 1.2 keeps oslo.messaging for control (one call per
window of several MiB, which is also the flow control) and moves the bytes
as binary AMQP messages on the same RabbitMQ:

* the destination declares an exclusive, auto-delete queue of its own
  (``consolelog-bulk-<hex>``; the broker deletes it when the destination's
  connection goes away, whatever happens to the pull) and consumes it with
  a bounded prefetch;
* the source publishes each chunk of the asked window to the default
  exchange with that queue as routing key: the body is the chunk's bytes
  (zlib level 1 when a sample shrinks), the headers say ``name``,
  ``offset``, ``length``, ``sha256`` (of the raw bytes),
  ``data_compression`` (kombu itself acts on a header named
  ``compression``) and ``eof``; with RPC 1.3 also ``token``,
  ``instance_uuid`` and ``stash_id``, which bind the frame to the request
  it answers (``frame_binding``).

Everything in a frame comes from the bus, where anyone holding its
credentials can publish: headers are type-checked and bounded, a declared
length above ``MAX_CHUNK`` is refused and decompression stops at the
declared length (a 1 KiB frame inflating to 250 MiB costs nothing). A
source publishes nothing to a queue that does not exist: the first message
of a window is published mandatory and confirmed, and a window to a queue
that no longer (or never) existed ends after that one message
(``Publisher.publish``).

Only ``rabbit://`` transports have a broker kombu can reach; any other
driver (``fake://`` in tests) has no bulk channel and pulls with 1.1 chunk
calls. The source only publishes to queue names of this form, so a caller
cannot make it write into somebody else's queue.
"""

import re
import ssl
import threading
import urllib.parse
import uuid
import zlib

import kombu
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging
from oslo_utils import strutils

from nova_consolelog import exception
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)

QUEUE_PREFIX = 'consolelog-bulk-'
# Always used with fullmatch: '$' would accept a trailing newline.
_QUEUE_RE = re.compile(r'%s[0-9a-f]{32}' % re.escape(QUEUE_PREFIX))
CONTENT_TYPE = 'application/octet-stream'

# The largest chunk a source sends: the largest [consolelog] chunk_size. A
# frame declaring more, or carrying a larger body, is refused unread.
MAX_CHUNK = 8 * 1024 * 1024
# Chain file names are short (console.log.N, history names); anything
# longer, or with control characters, is not one of ours.
MAX_NAME = 64
_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')
MAX_OFFSET = 2 ** 63 - 1
# instance_uuid and stash_id of a binding: a uuid or a stash id.
_MAX_BINDING = 64

# Publisher connections kept per broker URL on a source: concurrent pulls
# publish in parallel up to this many, then wait for a free connection.
POOL_SIZE = 4
# Connect and socket timeouts (seconds) of our own kombu connections.
CONNECT_TIMEOUT = 10


def kombu_url(conf, transport_url=None, transport=None):
    """The kombu URL of the RabbitMQ behind an oslo.messaging transport.

    From ``transport_url`` if given; else from the ``[DEFAULT]
    transport_url`` of the configuration ``transport`` was built from
    (nova's own CONF inside nova-compute, where ``conf`` is our private
    one); else of ``conf``. None when the transport is not ``rabbit://``:
    such a driver has no broker for the bulk channel.
    """
    if transport_url is None and transport is not None:
        conf = getattr(transport, 'conf', None) or conf
    try:
        url = oslo_messaging.TransportURL.parse(conf, transport_url)
    except Exception as e:
        # Whatever the reason, the chunk calls still work: never fail here.
        LOG.debug('No bulk channel: transport URL not parsed: %s', e)
        return None
    if url.transport != 'rabbit' or not url.hosts:
        return None
    vhost = urllib.parse.quote(url.virtual_host or '/', safe='')
    urls = []
    for host in url.hosts:
        auth = ''
        if host.username:
            auth = '%s:%s@' % (urllib.parse.quote(host.username, safe=''),
                               urllib.parse.quote(host.password or '',
                                                  safe=''))
        hostname = host.hostname or '127.0.0.1'
        if ':' in hostname:
            hostname = '[%s]' % hostname
        urls.append('amqp://%s%s:%d/%s' % (auth, hostname, host.port or 5672,
                                           vhost))
    return ';'.join(urls)


# [oslo_messaging_rabbit] ssl_version values, as oslo.messaging reads them.
_SSL_VERSIONS = {
    'tlsv1': 'PROTOCOL_TLSv1',
    'tlsv1_1': 'PROTOCOL_TLSv1_1',
    'tlsv1_2': 'PROTOCOL_TLSv1_2',
    'sslv2': 'PROTOCOL_SSLv2',
    'sslv3': 'PROTOCOL_SSLv3',
    'sslv23': 'PROTOCOL_SSLv23',
}


def kombu_ssl(conf, transport_url=None, transport=None):
    """kombu's ``ssl`` argument for the broker ``kombu_url`` names.

    The bulk channel reaches the broker on connections of its own, so it
    takes TLS from where oslo.messaging's rabbit driver takes it:
    ``[oslo_messaging_rabbit] ssl``, ``ssl_version``, ``ssl_key_file``,
    ``ssl_cert_file`` and ``ssl_ca_file`` of the transport's configuration
    (nova's inside nova-compute), each overridden by the same name in the
    transport URL's query. With a CA file the certificate and, for a single
    broker host, its name are verified, as oslo.messaging does.

    :returns: False (no TLS), True (TLS with Python's defaults) or a dict
        of ``ssl.wrap_socket``-style arguments.
    """
    if transport_url is None and transport is not None:
        conf = getattr(transport, 'conf', None) or conf
    try:
        url = oslo_messaging.TransportURL.parse(conf, transport_url)
    except Exception:
        return False
    query = url.query or {}

    def option(name, default):
        if name in query:
            return query[name]
        try:
            return conf['oslo_messaging_rabbit'][name]
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
            return default

    if not strutils.bool_from_string(option('ssl', False)):
        return False
    params = {}
    version = option('ssl_version', '')
    if version:
        protocol = getattr(ssl, _SSL_VERSIONS.get(version.lower(), ''), None)
        if protocol is None:
            LOG.warning('Bulk channel: [oslo_messaging_rabbit] ssl_version '
                        '%r is not known here; using the default', version)
        else:
            params['ssl_version'] = protocol
    for name, key in (('ssl_key_file', 'keyfile'),
                      ('ssl_cert_file', 'certfile')):
        if option(name, ''):
            params[key] = option(name, '')
    if option('ssl_ca_file', ''):
        params['ca_certs'] = option('ssl_ca_file', '')
        params['cert_reqs'] = ssl.CERT_REQUIRED
        params['server_hostname'] = (url.hosts[0].hostname
                                     if len(url.hosts) == 1 else None)
    return params or True


def new_queue_name():
    return QUEUE_PREFIX + uuid.uuid4().hex


def check_queue_name(name):
    """``name`` if it is a bulk reply queue name, else InvalidInput."""
    if not isinstance(name, str) or not _QUEUE_RE.fullmatch(name):
        raise exception.InvalidInput(
            reason='reply_queue %s is not a console-log bulk queue' % (
                names.echo(name),))
    return name


def _connection(url, ssl_params=False):
    return kombu.Connection(url, ssl=ssl_params,
                            connect_timeout=CONNECT_TIMEOUT,
                            transport_options={'confirm_publish': False})


class Publisher:
    """Publishes bulk chunks to one broker through a few pooled connections.

    One per broker URL, TLS settings and process (``publisher_for``): a
    connection costs a TCP (and TLS) and AMQP handshake, and a kombu
    connection must not be shared by two threads at once, so each window
    borrows one for its duration.
    """

    def __init__(self, url, size=POOL_SIZE, ssl_params=False):
        self.url = url
        self.ssl_params = ssl_params
        self._free = []
        # Per pooled connection: its channel in confirm mode, for the first
        # message of each window (``_probe``).
        self._probes = {}
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    def _acquire(self):
        self._slots.acquire()
        with self._lock:
            if self._free:
                return self._free.pop()
        try:
            conn = _connection(self.url, self.ssl_params)
            conn.ensure_connection(max_retries=1)
            return conn
        except Exception:
            self._slots.release()
            raise

    def _release(self, conn, healthy):
        if healthy:
            with self._lock:
                self._free.append(conn)
        else:
            with self._lock:
                self._probes.pop(id(conn), None)
            try:
                conn.release()
            except Exception:  # the connection is already broken
                pass
        self._slots.release()

    def publish(self, reply_queue, chunks):
        """Publish ``(headers, body)`` pairs to ``reply_queue`` in order.

        A pooled connection the broker (or a firewall) closed while idle
        fails on its first message: that message is sent again once on a
        new connection.

        The first message is published mandatory and confirmed before any
        other goes out: when no queue of that name exists (the puller's
        connection is gone, or a caller named a queue that never existed),
        the broker returns it and nothing more is published. One round
        trip per window.

        :raises: BulkUnavailable when the broker cannot be reached or the
            connection breaks; the caller fetches the window again.
        :raises: InvalidInput when ``reply_queue`` does not exist.
        """
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            return
        for attempt in (1, 2):
            sent = self._publish(reply_queue, first, chunks,
                                 retry_first=attempt == 1)
            if sent:
                return

    def _publish(self, reply_queue, first, chunks, retry_first):
        """Publish all; False when the first message failed to go out."""
        try:
            conn = self._acquire()
        except Exception as e:
            raise exception.BulkUnavailable(reason='cannot connect to %s: '
                                            '%s' % (_safe(self.url), e))
        healthy = False
        sent = 0
        try:
            self._probe(conn, reply_queue, first)
            sent += 1
            producer = kombu.Producer(conn.default_channel,
                                      exchange=kombu.Exchange(''),
                                      auto_declare=False)
            for headers, body in chunks:
                producer.publish(body, routing_key=reply_queue,
                                 content_type=CONTENT_TYPE,
                                 content_encoding='binary',
                                 headers=headers, retry=False)
                sent += 1
            healthy = True
            return True
        except exception.ConsoleLogError:
            healthy = True
            raise
        except Exception as e:
            if sent == 0 and retry_first:
                LOG.debug('Bulk publish on a pooled connection failed (%s); '
                          'once more on a new one', e)
                return False
            raise exception.BulkUnavailable(reason='publishing failed: %s'
                                            % e)
        finally:
            self._release(conn, healthy)

    def _probe(self, conn, reply_queue, message):
        """Publish ``message`` mandatory and wait for the broker's confirm.

        Why: a message to a queue that does not exist is dropped by the
        broker without a word; publishing a window (megabytes) to nowhere
        costs the source and the broker for nothing. RabbitMQ sends
        ``basic.return`` before the ``basic.ack`` of an unroutable
        mandatory message, so once the confirm is in we know. The confirm
        also means the message is queued before the others of the window
        are published (on another channel), so the order is kept. An
        exclusive queue of another connection (the puller's) is routable:
        publishing to it is allowed.

        :raises: InvalidInput when the message was returned.
        """
        with self._lock:
            probe = self._probes.get(id(conn))
        if probe is None:
            returned = []

            def on_return(error, exchange, routing_key, message):
                returned.append(exception.bounded(str(error), 120))
            channel = conn.channel()
            channel.events['basic_return'].add(on_return)
            probe = (channel, returned)
            with self._lock:
                self._probes[id(conn)] = probe
        channel, returned = probe
        del returned[:]
        headers, body = message
        msg = channel.prepare_message(body, content_type=CONTENT_TYPE,
                                      content_encoding='binary',
                                      headers=headers)
        channel.basic_publish_confirm(msg, exchange='',
                                      routing_key=reply_queue,
                                      mandatory=True,
                                      confirm_timeout=CONNECT_TIMEOUT)
        if returned:
            raise exception.InvalidInput(
                reason='reply queue %s does not exist (%s)' % (
                    reply_queue, returned[0]))

    def close(self):
        with self._lock:
            free, self._free = self._free, []
            self._probes.clear()
        for conn in free:
            conn.release()


_publishers = {}
_publishers_lock = threading.Lock()


def publisher_for(url, ssl_params=False):
    """The process-wide Publisher of broker ``url`` with ``ssl_params``."""
    key = (url, repr(sorted(ssl_params.items()))
           if isinstance(ssl_params, dict) else ssl_params)
    with _publishers_lock:
        publisher = _publishers.get(key)
        if publisher is None:
            publisher = _publishers[key] = Publisher(url,
                                                     ssl_params=ssl_params)
        return publisher


def _safe(url):
    """``url`` without passwords, for messages."""
    return re.sub(r'//([^:@/]*):[^@/]*@', r'//\1:***@', url)


def chunk_headers(name, offset, length, sha256, compression, eof,
                  token=None, instance_uuid=None, stash_id=None):
    """The AMQP headers of a bulk chunk.

    With a ``token`` (the puller's per-request secret), ``instance_uuid``
    and ``stash_id`` (None for the live chain) are added too, so that the
    puller accepts the frame only for the request it answers.
    """
    headers = {'name': name, 'offset': offset, 'length': length,
               'sha256': sha256, 'data_compression': compression,
               'eof': eof}
    if token is not None:
        headers.update(token=token, instance_uuid=instance_uuid,
                       stash_id=stash_id)
    return headers


def _echo(headers):
    """A short form of headers for an error message."""
    return exception.bounded(repr(headers), 200)


def frame_binding(headers):
    """``(token, instance_uuid, stash_id)`` of a received bulk message.

    Each is None when the frame does not carry it (a source of an older
    release sends none); the caller decides whether that is acceptable
    and compares the values with its request's.

    :raises: ValueError when present values have the wrong type or form:
        ``token`` must be 32 lowercase hex digits, ``instance_uuid`` and
        ``stash_id`` strings of at most 64 characters or None.
    """
    if not isinstance(headers, dict):
        raise ValueError('bulk message without headers')
    token = headers.get('token')
    if 'token' in headers and not names.is_token(token):
        raise ValueError('bulk message with a malformed token %s' % (
            exception.bounded(repr(token), 80),))
    found = [token]
    for key in ('instance_uuid', 'stash_id'):
        value = headers.get(key)
        if value is not None and not (isinstance(value, str) and
                                      len(value) <= _MAX_BINDING):
            raise ValueError('bulk message with a malformed %s %s' % (
                key, exception.bounded(repr(value), 80)))
        found.append(value)
    return tuple(found)


def parse_headers(headers):
    """``(name, offset, length)`` of a received bulk message.

    What the receiving thread needs to place a message in its window; the
    rest (decompression, the caller's sha256 check) can run elsewhere
    (``decode_chunk``).

    :raises: ValueError for headers that do not describe a chunk.
    """
    if not isinstance(headers, dict):
        raise ValueError('bulk message without headers')
    try:
        name = headers['name']
        offset = headers['offset']
        length = headers['length']
    except KeyError as e:
        raise ValueError('bulk message without header %s' % (
            exception.bounded(str(e), 80),))
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and
            not _CONTROL_RE.search(name) and _count(offset) and
            _count(length) and offset <= MAX_OFFSET):
        raise ValueError('bulk message with malformed headers %s' % (
            _echo(headers),))
    if length > MAX_CHUNK:
        raise ValueError('bulk chunk %s@%d declares %d bytes, more than '
                         'the %d allowed' % (name, offset, length,
                                             MAX_CHUNK))
    return name, offset, length


def _count(value):
    """A non-negative int (not a bool)."""
    return (isinstance(value, int) and not isinstance(value, bool) and
            value >= 0)


def decode_chunk(headers, body):
    """``(name, offset, raw, sha256, eof)`` of a received bulk message.

    Checks the headers' types and decompresses; the caller checks the
    sha256 and that the range is one it asked for.

    :raises: ValueError for a message that is not a well-formed chunk.
    """
    name, offset, length = parse_headers(headers)
    try:
        sha256 = headers['sha256']
        compression = headers['data_compression']
        eof = headers['eof']
    except KeyError as e:
        raise ValueError('bulk message without header %s' % e)
    if not (isinstance(sha256, str) and len(sha256) <= 128 and
            isinstance(eof, bool)):
        raise ValueError('bulk message with malformed headers %s' % (
            _echo(headers),))
    if body == '':
        # kombu hands an empty body over as text.
        body = b''
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError('bulk message body is %s, not bytes' % (
            type(body).__name__,))
    if len(body) > MAX_CHUNK:
        raise ValueError('bulk chunk %s@%d of %d bytes, more than the %d '
                         'allowed' % (name, offset, len(body), MAX_CHUNK))
    if compression == cl_fields.Compression.ZLIB:
        raw = _inflate(body, length, name, offset)
    elif compression == cl_fields.Compression.NONE:
        raw = bytes(body)
    else:
        raise ValueError('bulk chunk with unknown compression %s' % (
            exception.bounded(repr(compression), 40),))
    if len(raw) != length:
        raise ValueError('bulk chunk %s@%d holds %d bytes, not %d' % (
            name, offset, len(raw), length))
    return name, offset, raw, sha256, eof


def _inflate(body, length, name, offset):
    """``body`` decompressed, never to more than ``length`` + 1 bytes.

    Why: the sender chooses what a compressed body inflates to; the length
    it declared (bounded by MAX_CHUNK) is all we are ready to hold.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, length + 1)
    except zlib.error as e:
        raise ValueError('bulk chunk does not decompress: %s' % e)
    if len(raw) > length:
        raise ValueError('bulk chunk %s@%d inflates past its declared %d '
                         'bytes' % (name, offset, length))
    if not inflater.eof or inflater.unused_data:
        raise ValueError('bulk chunk %s@%d is not one whole zlib stream' % (
            name, offset))
    return raw


class Receiver:
    """The destination's end: an exclusive queue of its own, consumed.

    Use as a context manager; leaving it deletes the queue and closes the
    connection (the broker would delete the exclusive, auto-delete queue
    with the connection anyway, also when this process dies).
    """

    def __init__(self, url, prefetch, ssl_params=False):
        self.url = url
        self.ssl_params = ssl_params
        self.prefetch = prefetch
        self.queue_name = new_queue_name()
        self._conn = None
        self._queue = None
        self._consumer = None
        self._received = []

    def __enter__(self):
        try:
            self._conn = _connection(self.url, self.ssl_params)
            self._conn.ensure_connection(max_retries=1)
            channel = self._conn.channel()
            self._queue = kombu.Queue(self.queue_name, exchange='',
                                      routing_key=self.queue_name,
                                      exclusive=True, auto_delete=True,
                                      durable=False, channel=channel)
            self._queue.declare()
            self._consumer = kombu.Consumer(
                channel, queues=[self._queue], callbacks=[self._on_message],
                accept=None, prefetch_count=self.prefetch, auto_declare=False)
            self._consumer.consume()
        except Exception as e:
            self.close()
            raise exception.BulkUnavailable(reason='cannot open a queue on '
                                            '%s: %s' % (_safe(self.url), e))
        return self

    def __exit__(self, *exc):
        self.close()

    def _on_message(self, body, message):
        self._received.append((message.headers, message.body))
        message.ack()

    def receive(self, timeout):
        """Messages ``(headers, body)`` arrived within ``timeout`` seconds.

        Returns an empty list when none came.

        :raises: BulkUnavailable when the connection broke.
        """
        try:
            self._conn.drain_events(timeout=timeout)
            # Take what is already buffered without waiting again.
            while len(self._received) < self.prefetch:
                self._conn.drain_events(timeout=0)
        except TimeoutError:
            pass
        except Exception as e:
            raise exception.BulkUnavailable(reason='bulk queue lost: %s' % e)
        received, self._received = self._received, []
        return received

    def close(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._consumer is not None:
                self._consumer.cancel()
            if self._queue is not None:
                self._queue.delete()
        except Exception as e:
            LOG.debug('Bulk queue %s not deleted (%s); the broker deletes '
                      'it with the connection', self.queue_name, e)
        finally:
            try:
                conn.release()
            except Exception:  # the connection is already broken
                pass
