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
  exchange with that queue as routing key, one frame per chunk (the
  frame format, and the checks of every frame that arrives, are in
  ``rpc.frames``).

A source publishes nothing to a queue that does not exist: the first
message of a window is published mandatory and confirmed, and a window to
a queue that no longer (or never) existed ends after that one message
(``Publisher.publish``). This module holds the broker side shared by both
ends (connections, queue names) and the source's publisher pool;
``rpc.bulk_receiver`` the destination's receiver with its pool of
connections (a pull declares a queue of its own on a connection an earlier
pull of the process left, instead of opening a new one); ``rpc.broker`` the
broker's address and TLS settings (taken from oslo.messaging's).

Only ``rabbit://`` transports have a broker kombu can reach; any other
driver (``fake://`` in tests) has no bulk channel and pulls with 1.1 chunk
calls. The source only publishes to queue names of this form, so a caller
cannot make it write into somebody else's queue.
"""

import re
import threading
import uuid

import kombu
from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog import names
from nova_consolelog.rpc import frames

LOG = logging.getLogger(__name__)

QUEUE_PREFIX = 'consolelog-bulk-'
# Always used with fullmatch: '$' would accept a trailing newline.
_QUEUE_RE = re.compile(r'%s[0-9a-f]{32}' % re.escape(QUEUE_PREFIX))


# Publisher connections kept per broker URL on a source: concurrent pulls
# publish in parallel up to this many, then wait for a free connection.
POOL_SIZE = 4
# Connect and socket timeouts (seconds) of our own kombu connections.
CONNECT_TIMEOUT = 10


def new_queue_name():
    return QUEUE_PREFIX + uuid.uuid4().hex


def check_queue_name(name):
    """``name`` if it is a bulk reply queue name, else InvalidInput."""
    if not isinstance(name, str) or not _QUEUE_RE.fullmatch(name):
        raise exception.InvalidInput(
            reason='reply_queue %s is not a console-log bulk queue' % (
                names.echo(name),))
    return name


# ``(on_blocked(reason), on_unblocked())`` pairs told when the broker
# blocks or unblocks one of our connections (RabbitMQ's memory or disk
# alarm, AMQP ``connection.blocked``): the pulls' pacing backs off
# (``transfer.pacing``).
BLOCKED_LISTENERS = []


def _on_blocked(reason):
    LOG.warning('The broker blocked a console-log bulk connection (%s): '
                'console-log pulls slow down', reason)
    for blocked, _unblocked in list(BLOCKED_LISTENERS):
        blocked(reason)


def _on_unblocked():
    LOG.info('The broker unblocked a console-log bulk connection')
    for _blocked, unblocked in list(BLOCKED_LISTENERS):
        unblocked()


def connect(url, ssl_params=False, io_timeout=None):
    """A kombu connection for the bulk channel (not yet connected).

    ``io_timeout`` bounds every socket read and write in seconds (None:
    unbounded, as a consumer waiting for messages needs).
    """
    options = {'confirm_publish': False,
               'on_blocked': _on_blocked,
               'on_unblocked': _on_unblocked}
    if io_timeout is not None:
        options.update(read_timeout=io_timeout, write_timeout=io_timeout)
    return kombu.Connection(url, ssl=ssl_params,
                            connect_timeout=CONNECT_TIMEOUT,
                            transport_options=options)


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
            conn = connect(self.url, self.ssl_params)
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
        fails on its first message: the idle connections beside it are
        closed too (a broker restart cut them all) and that message is sent
        again once on a new connection.

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
                                            '%s' % (safe_url(self.url), e))
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
                                 content_type=frames.CONTENT_TYPE,
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
                # Whatever cut this one (a broker restart) cut the idle
                # ones beside it too: the retry must not take one of them.
                self._drop_idle()
                return False
            raise exception.BulkUnavailable(reason='publishing failed: %s'
                                            % e)
        finally:
            self._release(conn, healthy)

    def _drop_idle(self):
        """Close the pooled connections no window holds now."""
        with self._lock:
            free, self._free = self._free, []
            for conn in free:
                self._probes.pop(id(conn), None)
        for conn in free:
            close_quietly(conn)

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
        msg = channel.prepare_message(body, content_type=frames.CONTENT_TYPE,
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


class PerBroker:
    """One object per broker URL and TLS settings in this process.

    The source's publisher pool and the destination's receiver pool are
    shared by every pull of the process, to the same broker with the same
    TLS settings; ``factory(url, ssl_params)`` makes the first one.
    """

    def __init__(self, factory):
        self._factory = factory
        self._objects = {}
        self._lock = threading.Lock()

    def get(self, url, ssl_params=False):
        key = (url, repr(sorted(ssl_params.items()))
               if isinstance(ssl_params, dict) else ssl_params)
        with self._lock:
            obj = self._objects.get(key)
            if obj is None:
                obj = self._objects[key] = self._factory(url, ssl_params)
            return obj


_publishers = PerBroker(
    lambda url, ssl_params: Publisher(url, ssl_params=ssl_params))


def publisher_for(url, ssl_params=False):
    """The process-wide Publisher of broker ``url`` with ``ssl_params``."""
    return _publishers.get(url, ssl_params)


def safe_url(url):
    """``url`` without passwords, for messages."""
    return re.sub(r'//([^:@/]*):[^@/]*@', r'//\1:***@', url)


def close_quietly(conn):
    """Release ``conn``, which may be broken already."""
    try:
        conn.release()
    except Exception:  # the connection is already broken
        pass
