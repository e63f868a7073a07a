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

"""What one pull shares between its core, chunk path and bulk path.

``PullJob`` holds a pull's settings (from ``[consolelog]`` and the
caller), its deadline, its counters, and the two things every path does
the same way: retrying a call (``retrying``: faults of the broker or the
peer with backoff, typed errors of the peer at once) and taking fetched
bytes in order (``deliver``: written as soon as they are contiguous,
progress recorded durably every ``CHECKPOINT_BYTES``). Nothing here
talks to the source by itself.
"""

import time

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import exception

LOG = logging.getLogger(__name__)

# Faults worth another try: the broker or the peer was slow or away, or a
# chunk arrived damaged. Typed errors of the peer (bad input, no such file)
# and PeerUnsupported are final.
RETRYABLE = (oslo_messaging.MessagingException, exception.ChecksumMismatch,
             ValueError, ConnectionError, OSError)
FINAL = (exception.ConsoleLogError,)

# Record verified progress durably every this many bytes (and at the end
# of every file): the sidecar write is an atomic replace.
CHECKPOINT_BYTES = 16 * 1024 * 1024

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0


class Deadline:
    """``pull_timeout`` from the start of the pull."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()


class FileState:
    """Progress of one source file: in-order writes and its digest."""

    def __init__(self, f, start, end):
        self.f = f
        self.start = start
        self.end = end
        self.contiguous = start
        self.checkpoint = start
        self.pending = {}


class PullJob:
    """Settings, deadline and counters of one pull; see ``puller.pull``.

    ``stash_id`` and ``v13`` are settled when the transfer is opened
    (``Puller._open``), before either path runs.
    """

    def __init__(self, conf, rpcapi, source_host, instance_uuid, stash_id,
                 progress, ctxt, window, chunk_size, local_host=None):
        group = conf.consolelog
        self.rpcapi = rpcapi
        self.host = source_host
        self.instance_uuid = instance_uuid
        self.stash_id = stash_id
        self.progress = progress
        self.ctxt = ctxt if ctxt is not None else {}
        self.window = window or group.pull_window
        self.chunk_size = chunk_size or group.chunk_size
        self.retries = group.pull_retries
        self.rpc_timeout = group.rpc_timeout
        self.deadline = Deadline(group.pull_timeout)
        self.compress = group.compression
        self.bulk_window = group.bulk_window
        self.bulk_compress = group.bulk_compression
        self.stopping = False
        self.fetched = 0
        self.wire = 0
        self.bulk_bytes = 0
        self.bulk_rejected = 0
        self.total = 0
        self.local_host = local_host
        # Whether the source speaks RPC 1.3 (hash lists, bound messages).
        self.v13 = False
        self._last_log = 0.0
        self.started = time.monotonic()

    def failed(self, reason):
        """TransferFailed of this pull (a later pull resumes it)."""
        return exception.TransferFailed(instance=self.instance_uuid,
                                        host=self.host, reason=reason)

    def retrying(self, what, fn):
        """Call ``fn(timeout)``, retrying faults with backoff."""
        delay = BACKOFF_START
        attempt = 0
        while True:
            if self.stopping:
                raise self.failed('stopped after another fault')
            remaining = self.deadline.remaining()
            if remaining <= 0:
                raise self.failed('pull_timeout ran out during %s' % what)
            try:
                return fn(max(1, min(self.rpc_timeout, remaining)))
            except exception.ChecksumMismatch as e:
                error = e
            except FINAL:
                raise
            except RETRYABLE as e:
                error = e
            attempt += 1
            if attempt > self.retries:
                raise self.failed('%s failed %d time(s), last: %s' % (
                    what, attempt, error))
            LOG.warning('Console-log pull of instance %s from %s: %s failed '
                        '(%s); retry %d/%d in %.1fs', self.instance_uuid,
                        self.host, what, error, attempt, self.retries, delay)
            time.sleep(min(delay, max(0, self.deadline.remaining())))
            delay = min(delay * 2, BACKOFF_MAX)

    def deliver(self, imp, st, offset, data, wire):
        """Take ``data`` at ``offset``; write what is contiguous.

        Progress is recorded durably (``Import.checkpoint``) every
        ``CHECKPOINT_BYTES`` and at the end of the file; the bytes are
        checked on disk before the install.
        """
        if offset < st.contiguous or offset in st.pending:
            return
        st.pending[offset] = (data, wire)
        while st.contiguous in st.pending:
            data, wire = st.pending.pop(st.contiguous)
            imp.write(st.f.name, st.contiguous, data)
            st.contiguous += len(data)
            self.fetched += len(data)
            self.wire += wire
        if st.contiguous >= st.end or (
                st.contiguous - st.checkpoint >= CHECKPOINT_BYTES):
            imp.checkpoint(st.f.name, st.contiguous)
            st.checkpoint = st.contiguous
        self.report()

    def report(self):
        """Tell ``progress`` and, every 5 s and at the end, the log."""
        if self.progress is not None:
            self.progress(self.fetched, self.total)
        now = time.monotonic()
        if now - self._last_log >= 5 or self.fetched >= self.total:
            self._last_log = now
            seconds = now - self.started
            LOG.debug('Console-log pull of instance %s from %s: %d/%d bytes '
                      '(%.1f MB/s)', self.instance_uuid, self.host,
                      self.fetched, self.total,
                      self.fetched / seconds / 1e6 if seconds else 0.0)
