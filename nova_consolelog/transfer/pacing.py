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

"""Pacing the pulls of a process: a rate cap that backs off.

Why: a pull at full speed fills the broker and its sockets with 1 MiB
messages ahead of nova's small ones, and on a small host takes the CPU the
broker needs; nova's own calls then wait (the host-drain bench measured
their p99 at 11 to 15 times idle). The destination asks for every window
and every chunk, so pacing the asks paces the source too.

How, kept simple:

* a token bucket of ``[consolelog] bulk_rate_limit`` bytes per second
  shared by every pull of the process; a window (or chunk) request takes
  its size in tokens first, waiting when there are not enough. The bucket
  holds at most one second of tokens, so an idle process starts with a
  burst of one second and no more. 0 turns pacing off entirely;
* the rate adapts to the broker (multiplicative decrease, additive
  increase, as TCP does):

  - the *broker's latency*: every ``bulk_path.PROBE_INTERVAL`` one pull
    of the process (``probe_due``) times a small AMQP round trip to the
    broker on a connection that carries nothing else
    (``rpc.bulk_receiver.BrokerProbe``), which is what nova's own small
    calls feel. Not on a pull's bulk connection: there the round trip
    first reads whatever of our own megabyte messages came before the
    answer, so it measured the pull and had to ignore everything below
    50 ms, which on a busy host it never reached. Not the round trip of
    a window's request to its first message either: that one measures
    the queue of windows at the source, which pacing itself makes long,
    and backing off on it only slows everything to the floor (measured).
    The latency's idle baseline is the lowest seen, allowed to drift up
    by ``BASELINE_DRIFT`` a minute so that a host whose idle latency
    really grew is not throttled forever. A latency above
    ``LATENCY_FACTOR`` times the baseline, and above ``LATENCY_MIN``,
    halves the rate. Waiting for two such latencies in a row instead
    never backed off in the host-drain bench (the probe is twice a
    second; its slow answers came one at a time), nor helped nova's calls;
  - the broker blocking our connection (RabbitMQ's memory or disk alarm:
    AMQP ``connection.blocked``) halves the rate too, and keeps it at the
    floor until ``connection.unblocked``;
  - at most one halving per ``BACKOFF_INTERVAL``, never below ``FLOOR``
    of the cap; once ``RECOVER_AFTER`` seconds passed without a reason to
    back off, the rate grows back by ``RECOVER_STEP`` of the cap per
    second.

  RabbitMQ's credit flow control needs nothing of ours: it slows the
  source's publishing, which shows as a longer window-open latency.
"""

import threading
import time

from oslo_log import log as logging

from nova_consolelog.rpc import bulk as cl_bulk

LOG = logging.getLogger(__name__)

LATENCY_FACTOR = 3.0
# Broker latencies below this never count as congestion (seconds): an idle
# loopback broker answers in 0.1 to 0.3 ms, and a baseline that small
# would make noise look like congestion. nova's small calls take about 3
# ms (p50) to 6 ms (p99) on an idle 2-vCPU host; a broker 5 ms late is
# one they feel.
LATENCY_MIN = 0.005
BASELINE_DRIFT = 0.1
BACKOFF_INTERVAL = 1.0
FLOOR = 1.0 / 16
RECOVER_AFTER = 5.0
RECOVER_STEP = 1.0 / 20


class Pacer:
    """The process's adaptive token bucket; see the module docstring.

    ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, cap, clock=time.monotonic, sleep=time.sleep):
        self.cap = float(cap)
        self.rate = float(cap)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = float(cap)
        self._filled = now
        self._baseline = None
        self._baseline_at = now
        self._last_backoff = None
        self._blocked = False
        self._next_probe = None
        self.backoffs = 0
        # Seconds requests of the process waited for tokens, in all.
        self.waited = 0.0

    @property
    def enabled(self):
        return self.cap > 0

    def _refill(self, now):
        self._recover(now)
        self._tokens = min(self.rate, self._tokens +
                           (now - self._filled) * self.rate)
        self._filled = now

    def _recover(self, now):
        if self._blocked or self.rate >= self.cap:
            return
        if self._last_backoff is None or (
                now - self._last_backoff < RECOVER_AFTER):
            return
        grown = (now - max(self._filled, self._last_backoff +
                           RECOVER_AFTER)) * RECOVER_STEP * self.cap
        if grown > 0:
            self.rate = min(self.cap, self.rate + grown)

    def take(self, nbytes, max_wait=None):
        """Wait until ``nbytes`` may be asked for; returns seconds waited.

        Tokens may go negative (a window is larger than a second at a low
        rate): the debt makes the next requests wait. ``max_wait`` bounds
        the wait (the pull's deadline).
        """
        if not self.enabled or nbytes <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if max_wait is not None:
            wait = min(wait, max(0.0, max_wait))
        if wait > 0:
            with self._lock:
                self.waited += wait
            self._sleep(wait)
        return wait

    def full_in(self):
        """Seconds until the bucket is full again at the current rate.

        0 when pacing is off. What a process that pulls nothing meanwhile
        waits before its next pull starts with a whole second's burst (the
        bench's hand-over on an idle destination).
        """
        if not self.enabled:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            return max(0.0, (self.rate - self._tokens) / self.rate)

    def probe_due(self, interval):
        """Whether the caller should measure the broker now.

        True for one caller once ``interval`` seconds have passed since
        the last: every pull of the process asks, one measures for all
        (the pacer is the process's, so is what steers it).
        """
        if not self.enabled:
            return False
        with self._lock:
            now = self._clock()
            if self._next_probe is not None and now < self._next_probe:
                return False
            self._next_probe = now + interval
            return True

    def observe(self, latency):
        """A broker round trip (seconds); halves the rate when high.

        ``None`` (the probe could not reach the broker) is no sample: the
        pull's own channel tells whether the broker is gone.
        """
        if not self.enabled or latency is None or latency < 0:
            return
        with self._lock:
            now = self._clock()
            if self._baseline is None:
                self._baseline = latency
            else:
                drifted = self._baseline * (
                    1 + BASELINE_DRIFT * (now - self._baseline_at) / 60.0)
                self._baseline = min(latency, drifted)
            self._baseline_at = now
            limit = max(LATENCY_MIN, LATENCY_FACTOR * self._baseline)
            if latency > limit:
                self._back_off(now, 'broker latency %.1f ms > %.1f ms'
                               % (latency * 1e3, limit * 1e3))

    def blocked(self, reason=''):
        """The broker blocked a connection of ours (an alarm)."""
        if not self.enabled:
            return
        with self._lock:
            self._blocked = True
            self._back_off(self._clock(), 'the broker blocked the '
                           'connection (%s)' % reason, force=True)
            self.rate = self.cap * FLOOR

    def unblocked(self):
        with self._lock:
            if self._blocked:
                self._blocked = False
                self._last_backoff = self._clock()
                LOG.info('Console-log pulls: the broker unblocked the '
                         'connection; pacing recovers from %.1f MB/s',
                         self.rate / 1e6)

    def _back_off(self, now, why, force=False):
        if not force and self._last_backoff is not None and (
                now - self._last_backoff < BACKOFF_INTERVAL):
            return
        self._refill(now)
        self.rate = max(self.cap * FLOOR, self.rate / 2)
        self._tokens = min(self._tokens, self.rate)
        self._last_backoff = now
        self.backoffs += 1
        LOG.debug('Console-log pulls slow down to %.1f MB/s: %s',
                  self.rate / 1e6, why)


_pacers = {}
_pacers_lock = threading.Lock()


def pacer_for(conf):
    """The process-wide Pacer of ``[consolelog] bulk_rate_limit``."""
    cap = conf.consolelog.bulk_rate_limit
    with _pacers_lock:
        pacer = _pacers.get(cap)
        if pacer is None:
            pacer = _pacers[cap] = Pacer(cap)
        return pacer


def _broker_blocked(reason):
    with _pacers_lock:
        pacers = list(_pacers.values())
    for pacer in pacers:
        pacer.blocked(reason)


def _broker_unblocked():
    with _pacers_lock:
        pacers = list(_pacers.values())
    for pacer in pacers:
        pacer.unblocked()


# The bulk channel's connections tell every pacer of the process.
cl_bulk.BLOCKED_LISTENERS.append((_broker_blocked, _broker_unblocked))
