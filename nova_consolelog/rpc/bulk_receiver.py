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

"""The destination's end of the bulk channel (see ``rpc.bulk``).

A pull's ``Receiver`` declares an exclusive, auto-delete queue of its own
and consumes the source's chunk messages from it; the connection under it
comes from the process's ``ReceiverPool`` of that broker and goes back
there only when the pull ended cleanly. The process's ``BrokerProbe``
times the broker for the pacing of its pulls on a connection of its own.
"""

import threading
import time

import kombu
from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog.rpc import bulk

LOG = logging.getLogger(__name__)

# Idle receiving connections a destination keeps per broker URL and TLS
# settings for its next pulls (``ReceiverPool``); a connection returned
# while this many wait is closed.
RECEIVER_POOL_SIZE = 4
# Seconds an idle receiving connection is kept. Our connections carry no
# heartbeats, so one left idle for long may have been cut (a broker
# restart, a firewall) without our knowing: it is closed, not reused.
RECEIVER_IDLE_MAX = 30.0
# Seconds a broker probe (``BrokerProbe``) waits for the broker's answer:
# a connection cut without our knowing (a firewall) must not hold the
# pull that probes. Far above any latency the pacing reacts to.
PROBE_TIMEOUT = 2.0


class ReceiverPool:
    """Idle connections of one broker, for the destination's next pulls.

    Why: a pull used to open an AMQP connection for its bulk queue and
    close it at the end: a TCP (and TLS) and AMQP handshake, about 8 ms of
    a 90 ms hand-over on a loopback broker, more across a network. Every
    pull still declares a queue of its own (a new name, so nothing of an
    earlier pull can reach it) on a channel of its own; only the
    connection is kept, and only when the pull ended cleanly: its
    consumer cancelled, its queue deleted and its channel closed without
    an error (``Receiver.close``). A connection on which anything failed
    is closed, never handed to the next pull. A kept connection may still
    have been cut while idle (a broker restart): the first step of the
    next pull on it fails, and that pull opens a new one
    (``Receiver.__enter__``). A connection idle for ``idle_max`` seconds
    is closed, not reused.

    ``clock`` is injectable for tests; ``created``, ``reused`` and
    ``discarded`` count connections for tests and the bench.
    """

    def __init__(self, url, ssl_params=False, size=None, idle_max=None,
                 clock=time.monotonic):
        self.url = url
        self.ssl_params = ssl_params
        self.size = RECEIVER_POOL_SIZE if size is None else size
        self.idle_max = RECEIVER_IDLE_MAX if idle_max is None else idle_max
        self._clock = clock
        self._idle = []
        self._lock = threading.Lock()
        self._timer = None
        self.created = 0
        self.reused = 0
        self.discarded = 0

    def _take_stale(self, now):
        """Remove and return the idle connections kept too long."""
        stale = [c for c, since in self._idle if now - since > self.idle_max]
        self._idle = [(c, since) for c, since in self._idle
                      if now - since <= self.idle_max]
        return stale

    def get(self):
        """``(connection, reused)``: an idle connection, else a new one.

        :raises: whatever kombu raises when no connection can be made.
        """
        with self._lock:
            stale = self._take_stale(self._clock())
            conn = self._idle.pop()[0] if self._idle else None
            if conn is not None:
                self.reused += 1
        for old in stale:
            bulk.close_quietly(old)
        if conn is not None:
            return conn, True
        conn = bulk.connect(self.url, self.ssl_params)
        try:
            conn.ensure_connection(max_retries=1)
        except Exception:
            bulk.close_quietly(conn)
            raise
        with self._lock:
            self.created += 1
        return conn, False

    def put(self, conn):
        """Keep ``conn``, which a pull left clean, for the next pull."""
        with self._lock:
            stale = self._take_stale(self._clock())
            keep = len(self._idle) < self.size
            if keep:
                self._idle.append((conn, self._clock()))
                self._schedule_prune()
        for old in stale:
            bulk.close_quietly(old)
        if not keep:
            bulk.close_quietly(conn)

    def discard(self, conn):
        """Close ``conn``: something failed on it; never reuse it."""
        with self._lock:
            self.discarded += 1
        bulk.close_quietly(conn)

    def idle(self):
        """Connections waiting for a pull now."""
        with self._lock:
            return len(self._idle)

    def _schedule_prune(self):
        # Under self._lock. Idle connections are closed after idle_max even
        # when no pull comes to notice.
        if self._timer is None:
            self._timer = threading.Timer(self.idle_max + 1.0, self._prune)
            self._timer.daemon = True
            self._timer.start()

    def _prune(self):
        with self._lock:
            self._timer = None
            stale = self._take_stale(self._clock())
            if self._idle:
                self._schedule_prune()
        for old in stale:
            bulk.close_quietly(old)

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for conn, _since in idle:
            bulk.close_quietly(conn)


_receiver_pools = bulk.PerBroker(ReceiverPool)


def receiver_pool_for(url, ssl_params=False):
    """The process-wide ReceiverPool of broker ``url`` with ``ssl_params``."""
    return _receiver_pools.get(url, ssl_params)


class BrokerProbe:
    """Times a small round trip to the broker on a connection of its own.

    Why: the pacing of pulls (``transfer.pacing``) backs off when the
    broker is slow to answer, which is what nova's own small calls feel.
    Timed on a pull's bulk connection, the round trip also reads whatever
    of our own megabyte messages the broker sent first, so it measured
    our pull rather than the broker and had to ignore everything below
    50 ms; a connection that carries nothing else measures only the
    broker's (and the host's) delay. One per process and broker, shared
    by every pull; a passive declare of ``amq.direct``, which every
    RabbitMQ has, changes nothing on the broker.
    """

    def __init__(self, url, ssl_params=False):
        self.url = url
        self.ssl_params = ssl_params
        self._conn = None
        self._channel = None
        self._lock = threading.Lock()

    def round_trip(self):
        """Seconds of one round trip, or None when the broker is unreachable.

        A failed probe (no connection, or no answer within
        ``PROBE_TIMEOUT``) only closes its connection, the next one opens
        a new one: the pull's own channel says whether the broker is gone.
        """
        with self._lock:
            try:
                if self._channel is None:
                    self._conn = bulk.connect(self.url, self.ssl_params,
                                              io_timeout=PROBE_TIMEOUT)
                    self._conn.ensure_connection(max_retries=1)
                    self._channel = self._conn.channel()
                started = time.monotonic()
                self._channel.exchange_declare('amq.direct', 'direct',
                                               passive=True)
                return time.monotonic() - started
            except Exception as e:
                LOG.debug('Broker probe on %s failed: %s',
                          bulk.safe_url(self.url), e)
                self._close()
                return None

    def _close(self):
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            bulk.close_quietly(conn)

    def close(self):
        with self._lock:
            self._close()


_probes = bulk.PerBroker(BrokerProbe)


def probe_for(url, ssl_params=False):
    """The process-wide BrokerProbe of broker ``url`` with ``ssl_params``."""
    return _probes.get(url, ssl_params)


class Receiver:
    """The destination's end: an exclusive queue of its own, consumed.

    Use as a context manager; leaving it deletes the queue. The connection
    comes from the process's ``ReceiverPool`` (or ``pool``) and goes back
    to it when the queue was deleted cleanly; otherwise it is closed (the
    broker deletes the exclusive, auto-delete queue with the connection,
    also when this process dies).
    """

    def __init__(self, url, prefetch, ssl_params=False, pool=None):
        self.url = url
        self.ssl_params = ssl_params
        self.prefetch = prefetch
        self.queue_name = bulk.new_queue_name()
        self._pool = pool or receiver_pool_for(url, ssl_params)
        self._conn = None
        self._channel = None
        self._queue = None
        self._consumer = None
        self._received = []
        # Set by anything that failed on the connection: it is not reused.
        self._broken = False

    def __enter__(self):
        for attempt in (1, 2):
            try:
                conn, reused = self._pool.get()
            except Exception as e:
                raise exception.BulkUnavailable(
                    reason='cannot open a queue on %s: %s' % (
                        bulk.safe_url(self.url), e))
            try:
                self._open(conn)
                return self
            except Exception as e:
                self._pool.discard(conn)
                self._conn = self._channel = None
                self._queue = self._consumer = None
                if reused and attempt == 1:
                    # Cut while idle (a broker restart): a new one.
                    LOG.debug('Pooled bulk connection failed (%s); opening '
                              'a new one', e)
                    continue
                raise exception.BulkUnavailable(
                    reason='cannot open a queue on %s: %s' % (
                        bulk.safe_url(self.url), e))

    def _open(self, conn):
        self._conn = conn
        self._channel = conn.channel()
        self._queue = kombu.Queue(self.queue_name, exchange='',
                                  routing_key=self.queue_name,
                                  exclusive=True, auto_delete=True,
                                  durable=False, channel=self._channel)
        self._queue.declare()
        self._consumer = kombu.Consumer(
            self._channel, queues=[self._queue], callbacks=[self._on_message],
            accept=None, prefetch_count=self.prefetch, auto_declare=False)
        self._consumer.consume()

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
            self._broken = True
            raise exception.BulkUnavailable(reason='bulk queue lost: %s' % e)
        received, self._received = self._received, []
        return received

    def close(self):
        """Delete our queue; the connection back to the pool if clean.

        Closing our channel drops whatever of our messages it still held
        unacknowledged, so the next pull's channel on the same connection
        starts empty, on a queue of another name.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        clean = not self._broken
        try:
            if self._consumer is not None:
                self._consumer.cancel()
            if self._queue is not None:
                self._queue.delete()
            if self._channel is not None:
                self._channel.close()
        except Exception as e:
            clean = False
            LOG.debug('Bulk queue %s not deleted (%s); the broker deletes '
                      'it with the connection', self.queue_name, e)
        finally:
            self._channel = self._queue = self._consumer = None
            if clean:
                self._pool.put(conn)
            else:
                self._pool.discard(conn)
