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

"""The bulk path of a pull: RPC 1.2/1.3 windows over rpc.bulk.

When both sides speak RPC 1.2 or later over RabbitMQ, a pull asks for a
window of a file per call, ``BULK_WINDOWS`` calls in flight, and the bytes
arrive as binary AMQP messages on a queue of our own (``rpc.bulk``). Each
window carries a random token that every message must repeat with the
instance, stash, file and offset (1.3), or it is dropped and counted:
anybody with the bus credentials can publish into our queue. A receiving
thread reads messages; a sink thread checks and writes them in order
(``PullJob.deliver``). What a window does not deliver intact is read with
chunk calls at once (``ChunkPath.fetch``); when the channel itself fails,
the rest is left to the chunk path.
"""

import collections
import concurrent.futures
import secrets
import time

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog.rpc import bulk_receiver
from nova_consolelog.rpc import frames
from nova_consolelog.transfer import job as cl_job

LOG = logging.getLogger(__name__)

# Bulk windows (RPC 1.2 calls) in flight, counted until all their bytes
# arrived (``_Window.busy``): one being published while the next is asked
# for, so the link never idles on a round trip.
BULK_WINDOWS = 2
# Bulk messages taken from the broker before they are processed.
BULK_PREFETCH = 8
# Seconds to wait, after a window's call returned and while none of its
# messages arrive, before the rest is read with chunk calls: the messages
# travel on another connection than the call's reply.
BULK_GRACE = 5.0
# Bulk messages received but not yet verified and written (see
# BulkPath._on_bulk_message); beyond this the receiving thread waits.
SINK_BACKLOG = 4
# Seconds between two broker round trips measured for the pacing, by one
# pull of the process for all of them (``pacing.Pacer.probe_due``).
PROBE_INTERVAL = 0.5
# Seconds the receiving thread waits for a bulk message when there is
# nothing else to do.
_RECEIVE_WAIT = 0.05


class _Window:
    """One bulk call: bytes [start, end) of file ``name``."""

    def __init__(self, name, start, end):
        self.name = name
        self.start = start
        self.end = end
        # Every message of this window must repeat it (RPC 1.3).
        self.token = secrets.token_hex(16)
        self.future = None
        self.summary = None
        self.error = None
        self.seen = 0
        self.received = {}
        self.got = 0
        # Bytes of this window that arrived (checked or not yet).
        self.arrived = 0
        # offset -> future of a received chunk still being checked.
        self.checking = {}
        self.grace_end = None

    def holds(self, name, offset, length):
        return (name == self.name and self.start <= offset and
                offset + length <= self.end)

    def busy(self, now):
        """Whether this window still holds a place among those in flight.

        Until all its bytes arrived: what is still being checked and
        written no longer needs the source or the broker (the sink's
        backlog bounds it), so the next window is asked for meanwhile.
        """
        return self.arrived < self.end - self.start and not self.settled(
            now)

    def settled(self, now):
        if self.checking:
            return False
        if self.got >= self.end - self.start or self.error is not None:
            return True
        if self.summary is None:
            return False
        return (self.seen >= self.summary.get('chunks', 0) or
                now >= self.grace_end)

    def holes(self):
        at = self.start
        for offset in sorted(self.received):
            if offset > at:
                yield at, offset
            at = max(at, offset + self.received[offset])
        if at < self.end:
            yield at, self.end


def _checking(windows):
    """Futures of the chunks of ``windows`` the sink still checks."""
    return [f for w in windows for f in w.checking.values()]


class BulkPath:
    """The bulk channel of one pull (``job``); falls back to ``chunks``."""

    def __init__(self, job, chunks):
        self.job = job
        self.chunks = chunks
        self._queue_name = None
        self._sink = None
        # Windows already settled: their late messages are not foreign.
        self._settled_tokens = collections.deque(maxlen=64)

    def supported(self):
        supported = getattr(self.job.rpcapi, 'bulk_supported', None)
        return supported is not None and supported(self.job.host)

    def pull(self, imp, states):
        """Fetch as much as the bulk channel delivers; see rpc.bulk.

        Whatever it does not deliver intact (a damaged or lost message, a
        failed call) is read with chunk calls right away; when the channel
        itself fails (no queue, broker connection lost, a pre-1.2 peer),
        the rest is left to the chunk path of ``run``.
        """
        windows = collections.deque()
        by_name = {}
        for st in states:
            by_name[st.f.name] = st
            pos = st.contiguous
            while pos < st.end:
                stop = min(pos + self.job.bulk_window, st.end)
                windows.append(_Window(st.f.name, pos, stop))
                pos = stop
        if not windows:
            return
        callers = concurrent.futures.ThreadPoolExecutor(
            max_workers=BULK_WINDOWS, thread_name_prefix='consolelog-bulk')
        # One thread checks and writes what arrives, in order, while this
        # one reads the next messages: decompressing, hashing and pwrite
        # release the GIL, reading AMQP frames does not, so the two share
        # the host's cores instead of taking turns.
        self._sink = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='consolelog-sink')
        try:
            with bulk_receiver.Receiver(
                    self.job.rpcapi.bulk_url, BULK_PREFETCH,
                    getattr(self.job.rpcapi, 'bulk_ssl', False)) as receiver:
                self._loop(imp, by_name, windows, receiver, callers)
        except exception.BulkUnavailable as e:
            LOG.warning('Console-log pull of instance %s from %s: bulk '
                        'channel failed (%s); reading the rest with chunk '
                        'calls', self.job.instance_uuid, self.job.host, e)
        except exception.PeerUnsupported as e:
            LOG.info('Console-log pull of instance %s: %s; reading chunk '
                     'calls', self.job.instance_uuid, e)
        finally:
            callers.shutdown(wait=False, cancel_futures=True)
            # The chunk path writes next: let the sink finish first.
            self._sink.shutdown(wait=True)

    def _loop(self, imp, by_name, windows, receiver, callers):
        self._queue_name = receiver.queue_name
        inflight = []
        probe = bulk_receiver.probe_for(
            self.job.rpcapi.bulk_url,
            getattr(self.job.rpcapi, 'bulk_ssl', False))
        while windows or inflight:
            if self.job.pacer.probe_due(PROBE_INTERVAL):
                # The broker's small-call latency steers the pacing.
                self.job.pacer.observe(probe.round_trip())
            now = time.monotonic()
            while windows and sum(w.busy(now)
                                  for w in inflight) < BULK_WINDOWS:
                w = windows.popleft()
                w.future = callers.submit(self._send_window, w,
                                          receiver.queue_name)
                inflight.append(w)
            if self.job.deadline.remaining() <= 0:
                raise self.job.failed('pull_timeout ran out on the bulk '
                                      'channel')
            checking = _checking(inflight)
            # While chunks are being checked, the next window may be
            # waiting only for them: do not sleep in the socket then.
            batch = receiver.receive(
                timeout=0 if checking else _RECEIVE_WAIT)
            for headers, body in batch:
                self._on_bulk_message(imp, by_name, inflight, headers,
                                      body)
            if checking and not batch:
                concurrent.futures.wait(
                    checking, timeout=_RECEIVE_WAIT,
                    return_when=concurrent.futures.FIRST_COMPLETED)
            self._collect(inflight)
            now = time.monotonic()
            for w in list(inflight):
                if w.future.done() and w.summary is None and (
                        w.error is None):
                    rest = self._window_answered(w, now)
                    if rest is not None:
                        windows.appendleft(rest)
                if w.settled(now):
                    inflight.remove(w)
                    self._settled_tokens.append(w)
                    for lo, hi in w.holes():
                        LOG.debug('Console-log pull of instance %s: bulk '
                                  'window missed %s [%d, %d); chunk calls',
                                  self.job.instance_uuid, w.name, lo, hi)
                        data, wire = self.chunks.fetch(w.name, lo, hi)
                        self._sink.submit(self.job.deliver, imp,
                                          by_name[w.name], lo, data,
                                          wire).result()

    def _send_window(self, w, queue_name):
        job = self.job
        # Pacing the asks paces the source (``pacing``).
        job.pace(w.end - w.start)
        timeout = max(1, min(job.rpc_timeout, job.deadline.remaining()))
        return job.rpcapi.send_range(
            job.ctxt, job.host, job.instance_uuid, w.name, w.start,
            w.end - w.start, queue_name, stash_id=job.stash_id,
            compress=job.bulk_compress, timeout=timeout,
            request_token=w.token if job.v13 else None)

    def _window_answered(self, w, now):
        try:
            summary = w.future.result()
        except (exception.PeerUnsupported, exception.BulkUnavailable):
            raise
        except cl_job.FINAL:
            # Bad input, no such file or stash: as final as on a chunk.
            raise
        except cl_job.RETRYABLE as e:
            LOG.warning('Console-log pull of instance %s from %s: bulk call '
                        'for %s [%d, %d) failed (%s); chunk calls',
                        self.job.instance_uuid, self.job.host, w.name, w.start,
                        w.end, e)
            w.error = e
            return
        if not isinstance(summary, dict):
            summary = {}
        w.summary = summary
        w.grace_end = now + min(BULK_GRACE, self.job.rpc_timeout)
        sent = summary.get('bytes')
        if (isinstance(sent, int) and 0 < sent < w.end - w.start and
                not summary.get('eof')):
            # The source's bulk_window is smaller than ours: ask for the
            # rest as a window of its own.
            rest = _Window(w.name, w.start + sent, w.end)
            w.end = w.start + sent
            return rest
        return None

    def _on_bulk_message(self, imp, by_name, inflight, headers, body):
        """Place a message in its window and hand it to the sink.

        From a source of RPC 1.3 a message is taken only when it repeats
        its window's token, our instance and stash, and lies within the
        window: anything else in our queue was not asked for by us.
        """
        try:
            name, offset, length = frames.parse_headers(headers)
            binding = frames.frame_binding(headers)
        except ValueError as e:
            self._reject(e)
            return
        window = None
        for w in inflight:
            if w.holds(name, offset, length) and (
                    not self.job.v13 or binding == (
                        w.token, self.job.instance_uuid, self.job.stash_id)):
                window = w
                break
        if window is None:
            if self.job.v13 and not any(binding[0] == w.token
                                        for w in self._settled_tokens):
                self._reject('not bound to a request of this pull')
            return
        if offset in window.received or offset in window.checking:
            return  # a duplicate; the first copy is checked on disk
        window.seen += 1
        window.arrived += length
        if window.summary is not None:
            window.grace_end = time.monotonic() + min(BULK_GRACE,
                                                      self.job.rpc_timeout)
        window.checking[offset] = self._sink.submit(
            self._check_bulk_chunk, imp, by_name[name], headers, body)
        checking = _checking(inflight)
        if len(checking) > SINK_BACKLOG:
            concurrent.futures.wait(
                checking, return_when=concurrent.futures.FIRST_COMPLETED)

    def _reject(self, error):
        """Drop a bulk message we did not ask for; count it, say where."""
        job = self.job
        job.bulk_rejected += 1
        if job.bulk_rejected in (1, 10, 100, 1000):
            LOG.warning('Console-log pull of instance %s from %s: %d bulk '
                        'message(s) in queue %s dropped (last: %s); '
                        'somebody else publishes into it', job.instance_uuid,
                        job.host, job.bulk_rejected, self._queue_name,
                        str(error)[:200])

    def _bad_bulk_message(self, error):
        LOG.warning('Console-log pull of instance %s from %s: bad bulk '
                    'message dropped: %s', self.job.instance_uuid,
                    self.job.host, str(error)[:200])

    def _check_bulk_chunk(self, imp, st, headers, body):
        """On the sink: decode and deliver one message.

        Returns the chunk's length, or None when it does not decode (the
        window's hole is read again with a chunk call). Its bytes are
        checked on disk against the source's hash list before the install.
        """
        try:
            _name, offset, raw, _sha256, _eof = frames.decode_chunk(
                headers, body)
        except ValueError as e:
            self._bad_bulk_message(e)
            return None
        self.job.deliver(imp, st, offset, raw, len(body))
        # Counted here, not when collected: a chunk delivered while the
        # channel fails is still one the bulk channel brought.
        self.job.bulk_bytes += len(raw)
        return len(raw)

    def _collect(self, inflight):
        """Account the chunks the sink has finished with.

        Re-raises what the sink could not write (InstallFailed).
        """
        for w in inflight:
            for offset, future in list(w.checking.items()):
                if not future.done():
                    continue
                del w.checking[offset]
                size = future.result()
                if size is None:
                    self.job.bulk_rejected += 1
                    continue
                w.received[offset] = size
                w.got += size
