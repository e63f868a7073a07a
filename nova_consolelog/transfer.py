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

"""The pull engine: copy another host's console-log chain into ours.

The destination of a live migration pulls the source's stash (or, from the
command line, a pin of its live chain) into its own chain as imported
history. Anything on nova's bus may be hostile, so only bytes the source
vouched for over RPC are installed, each exactly once:

1. open the transfer (RPC 1.3, ``open_console_log_transfer``): the source
   hands the stash to this host and answers its files with a hash list
   each (a sha256 per MiB, computed when the stash was made) and a release
   token for this host. A live chain is pinned first (hard links, sizes
   fixed), so virtlogd rolling over during the pull can never splice two
   files. A source of 1.0 to 1.2 is described with whole-file checksums
   instead, and its live files cannot be pulled;
2. ``begin_import`` with an import id derived from the source host and the
   stash id: it owns the staging file (an flock), resumes a pull that
   stopped, or finds the import in place already (the ledger) — then only
   the release is left;
3. fetch the bytes. When both sides speak RPC 1.2 or later over RabbitMQ,
   over the bulk channel (rpc.bulk): one call per window, two in flight,
   the bytes arriving as binary AMQP messages on a queue of our own; each
   window carries a random token that every message must repeat with the
   instance, stash, file and offset, or it is dropped and counted.
   Otherwise, and for whatever the bulk channel did not deliver, chunk by
   chunk with ``pull_window`` calls in flight;
4. check every block on disk against the hash list (``Import.verify``);
   blocks that do not match — a damaged or forged message — are fetched
   again with chunk calls, within ``pull_retries`` rounds;
5. install atomically (``Import.commit``, recorded in the ledger), then ask
   the source to release its stash with the token and the roots of the
   installed files; a failed release is only a warning (it is asked again
   by the next retry, and the source expires stashes).

Memory stays bounded: chunks are written (pwrite) as soon as they arrive,
at most ``pull_window`` chunks (or, on the bulk channel, the messages of
two windows) are held at a time, and no file is ever held whole.
"""

import collections
import concurrent.futures
import hashlib
import secrets
import socket
import time

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog import names
from nova_consolelog.rpc import bulk as cl_bulk

LOG = logging.getLogger(__name__)

# Faults worth another try: the broker or the peer was slow or away, or a
# chunk arrived damaged. Typed errors of the peer (bad input, no such file)
# and PeerUnsupported are final.
_RETRYABLE = (oslo_messaging.MessagingException, exception.ChecksumMismatch,
              ValueError, ConnectionError, OSError)
_FINAL = (exception.ConsoleLogError,)

# Record verified progress durably every this many bytes (and at the end
# of every file): the sidecar write is an atomic replace.
_CHECKPOINT_BYTES = 16 * 1024 * 1024

BACKOFF_START = 0.2
BACKOFF_MAX = 5.0

# Bulk windows (RPC 1.2 calls) in flight: one being published while the
# next is asked for, so the link never idles on a round trip.
BULK_WINDOWS = 2
# Bulk messages taken from the broker before they are processed.
BULK_PREFETCH = 8
# Seconds to wait, after a window's call returned and while none of its
# messages arrive, before the rest is read with chunk calls: the messages
# travel on another connection than the call's reply.
BULK_GRACE = 5.0
# Seconds a pull waits for another pull of the same stash on this host.
IMPORT_WAIT = 60
# Bulk messages received but not yet verified and written (see
# _Puller._on_bulk_message); beyond this the receiving thread waits.
SINK_BACKLOG = 4
# Seconds the receiving thread waits for a bulk message when there is
# nothing else to do.
_RECEIVE_WAIT = 0.05

PullResult = collections.namedtuple(
    'PullResult', ['bytes', 'files', 'seconds', 'rate', 'wire_bytes',
                   'stash_id', 'released', 'bulk_bytes', 'sha256s',
                   'transfer_token', 'rejected', 'installed'],
    defaults=(0, None, None, 0, None))
PullResult.__doc__ = """Outcome of a pull.

``bytes``: bytes fetched by this run (a resumed pull counts only the rest);
``files``: files of the source set; ``seconds``; ``rate`` in bytes/s;
``wire_bytes``: chunk payload as sent (after compression, before base64);
``stash_id``: the source stash; ``released``: whether the source released
it; ``bulk_bytes``: bytes of ``bytes`` that came over the bulk channel;
``sha256s``: ``{name: root}`` of every source file as installed (the root
of its hash list; the whole-file sha256 from a source before 1.3), what a
later ``release`` of the stash takes, with ``transfer_token``;
``rejected``: bulk messages dropped (not bound to our request, malformed);
``installed``: the history file name (None when nothing was installed).
"""


def import_id_for(source_host, stash_id):
    """Stable import id for one source chain: a retry resumes its import."""
    key = '%s\0%s' % (source_host, stash_id or '')
    return 'pull-' + hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]


class _Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()


class _FileState:
    """Progress of one source file: in-order writes and its digest."""

    def __init__(self, f, start, end):
        self.f = f
        self.start = start
        self.end = end
        self.contiguous = start
        self.checkpoint = start
        self.pending = {}


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
        # offset -> future of a received chunk still being checked.
        self.checking = {}
        self.grace_end = None

    def holds(self, name, offset, length):
        return (name == self.name and self.start <= offset and
                offset + length <= self.end)

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


class _Puller:
    """One pull; see ``pull``."""

    def __init__(self, conf, rpcapi, source_host, instance_uuid, stash_id,
                 chain, progress, ctxt, window, chunk_size):
        group = conf.consolelog
        self.rpcapi = rpcapi
        self.host = source_host
        self.instance_uuid = instance_uuid
        self.stash_id = stash_id
        self.chain = chain
        self.progress = progress
        self.ctxt = ctxt if ctxt is not None else {}
        self.window = window or group.pull_window
        self.chunk_size = chunk_size or group.chunk_size
        self.retries = group.pull_retries
        self.rpc_timeout = group.rpc_timeout
        self.deadline = _Deadline(group.pull_timeout)
        self.compress = group.compression
        self.bulk_window = group.bulk_window
        self.bulk_compress = group.bulk_compression
        self.stopping = False
        self.fetched = 0
        self.wire = 0
        self.bulk_bytes = 0
        self.bulk_rejected = 0
        self.total = 0
        self.local_host = None
        # Whether the source speaks RPC 1.3 (hash lists, bound messages).
        self.v13 = False
        self._queue_name = None
        # Windows already settled: their late messages are not foreign.
        self._settled_tokens = collections.deque(maxlen=64)
        self._last_log = 0.0
        self._started = time.monotonic()

    # -- faults ----------------------------------------------------------

    def _failed(self, reason):
        return exception.TransferFailed(instance=self.instance_uuid,
                                        host=self.host, reason=reason)

    def _retrying(self, what, fn):
        """Call ``fn(timeout)``, retrying faults with backoff."""
        delay = BACKOFF_START
        attempt = 0
        while True:
            if self.stopping:
                raise self._failed('stopped after another fault')
            remaining = self.deadline.remaining()
            if remaining <= 0:
                raise self._failed('pull_timeout ran out during %s' % what)
            try:
                return fn(max(1, min(self.rpc_timeout, remaining)))
            except exception.ChecksumMismatch as e:
                error = e
            except _FINAL:
                raise
            except _RETRYABLE as e:
                error = e
            attempt += 1
            if attempt > self.retries:
                raise self._failed('%s failed %d time(s), last: %s' % (
                    what, attempt, error))
            LOG.warning('Console-log pull of instance %s from %s: %s failed '
                        '(%s); retry %d/%d in %.1fs', self.instance_uuid,
                        self.host, what, error, attempt, self.retries, delay)
            time.sleep(min(delay, max(0, self.deadline.remaining())))
            delay = min(delay * 2, BACKOFF_MAX)

    # -- fetching --------------------------------------------------------

    def _fetch(self, name, offset, end):
        """Bytes [offset, end) of ``name``, chunk-verified, with retries.

        A short answer (the source's chunk_size is smaller) continues from
        the last verified byte.
        """
        parts = []
        wire = 0
        pos = offset
        while pos < end:
            chunk = self._retrying(
                '%s@%d' % (name, pos),
                lambda timeout, p=pos: self._read_verified(
                    name, p, end - p, timeout))
            data, size_on_wire, eof = chunk
            parts.append(data)
            wire += size_on_wire
            pos += len(data)
            if pos < end and (eof or not data):
                raise self._failed('%s ends at %d, %d bytes were described'
                                   % (name, pos, end))
        return b''.join(parts), wire

    def _read_verified(self, name, offset, length, timeout):
        """One chunk call; the bytes are checked on disk, not here."""
        chunk = self.rpcapi.read_chunk(
            self.ctxt, self.host, self.instance_uuid, name, offset,
            min(length, self.chunk_size), stash_id=self.stash_id,
            compress=self.compress, timeout=timeout)
        if chunk.offset != offset or chunk.name != name:
            raise exception.ChecksumMismatch(
                name=name, offset=offset, expected='%s@%d' % (name, offset),
                actual='%.64s@%d' % (chunk.name, chunk.offset))
        data = chunk.raw_data(max_length=length)
        return data, len(chunk.data), chunk.eof

    # -- the pull --------------------------------------------------------

    def _open(self):
        """The source set with a hash list per file, and a release token.

        RPC 1.3 hands us the stash (or a pin of the live chain). A source
        of 1.0 to 1.2 is described with whole-file checksums: one block
        per file; a file it is still writing cannot be checked, so it is
        not pulled.
        """
        try:
            remote = self._retrying('open', lambda timeout: (
                self.rpcapi.open_transfer(
                    self.ctxt, self.host, self.instance_uuid,
                    self.local_host, stash_id=self.stash_id,
                    timeout=timeout)))
        except exception.PeerUnsupported as e:
            LOG.info('Console-log pull of instance %s: %s; pulling with '
                     'whole-file checksums', self.instance_uuid, e)
            return self._open_legacy(), None
        self._check_set(remote)
        token = remote.transfer_token
        if not names.is_token(token):
            raise self._failed('the source sent no valid transfer token')
        self.stash_id = remote.stash_id
        self.v13 = True
        digests = {}
        for f in remote.files:
            if f.size:
                digests[f.name] = (remote.block_size, hashlist.check(
                    f.size, remote.block_size, f.blocks))
        return (remote, digests), token

    def _open_legacy(self):
        remote = self._retrying('describe', lambda timeout: (
            self.rpcapi.describe(self.ctxt, self.host, self.instance_uuid,
                                 stash_id=self.stash_id, checksums=True)))
        self._check_set(remote)
        digests = {}
        for f in remote.files:
            if not f.size:
                continue
            if f.live or not hashlist.is_hex_digest(f.sha256):
                raise exception.PeerUnsupported(
                    host=self.host, what='pinning %s, which it still '
                    'writes (upgrade it to RPC 1.3)' % f.name)
            digests[f.name] = (f.size, [f.sha256])
        return remote, digests

    def _check_set(self, remote):
        """The set answers our question: this instance, this stash."""
        if getattr(remote, 'instance_uuid', None) != self.instance_uuid or (
                self.stash_id is not None and
                remote.stash_id != self.stash_id):
            raise self._failed('the source described another chain')

    def run(self, release):
        try:
            (remote, digests), token = self._open()
        except exception.StashNotFound:
            installed = self._installed_before()
            if not installed:
                raise
            # Installed and released by an earlier run (or a concurrent
            # pull): nothing is left to do anywhere.
            LOG.info('Console-log stash %s of instance %s from %s is '
                     'installed here already (%s) and released',
                     self.stash_id, self.instance_uuid, self.host,
                     installed)
            return PullResult(0, 0, 0.0, 0.0, 0, self.stash_id, True, 0,
                              {}, None, 0, installed)
        files = list(remote.files)
        if token:
            roots = {f.name: hashlist.root(f.size, remote.block_size,
                                           digests.get(f.name, (0, []))[1])
                     for f in files}
        else:
            roots = {f.name: (digests[f.name][1][0] if f.size else
                              hashlib.sha256(b'').hexdigest())
                     for f in files}
        if not any(f.size for f in files):
            # Nothing to install: an empty history file would only be
            # clutter. The (empty) stash may still be released.
            released = bool(release and self.stash_id is not None and
                            self._release(roots, token))
            return PullResult(0, len(files), 0.0, 0.0, 0, self.stash_id,
                              released, 0, roots, token)
        imp = self.chain.begin_import(
            import_id_for(self.host, self.stash_id),
            [(f.name, f.size) for f in files], digests,
            base_offset=remote.base_offset,
            wait=max(0, min(IMPORT_WAIT, self.deadline.remaining())))
        if imp.installed:
            released = bool(release and self._release(roots, token))
            return PullResult(0, len(files), 0.0, 0.0, 0, self.stash_id,
                              released, 0, roots, token, 0, imp.installed)
        states = [_FileState(f, *imp.wanted(f.name)) for f in files]
        self.total = sum(max(0, st.end - st.start) for st in states)
        try:
            if self._bulk_supported():
                self._pull_bulk(imp, states)
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.window,
                    thread_name_prefix='consolelog-pull') as pool:
                for st in states:
                    self._pull_file(pool, imp, st)
                self._check_on_disk(pool, imp)
        except (exception.TransferFailed, exception.PeerUnsupported):
            # Keep the import: written progress is durable and the next
            # pull with the same source resumes there (checking it all).
            imp.close()
            raise
        except (exception.InvalidInput, exception.ChainFileNotFound,
                exception.StashNotFound) as e:
            imp.abort()
            raise self._failed(str(e)) from e
        except BaseException:
            imp.close()
            raise
        try:
            name = imp.commit()
        except BaseException:
            # Whatever happened, the staging file is no longer ours: the
            # next pull takes it over (and the ledger tells it how far the
            # install went).
            imp.close()
            raise
        seconds = time.monotonic() - self._started
        released = False
        if release and self.stash_id is not None:
            released = self._release(roots, token)
        rate = self.fetched / seconds if seconds > 0 else 0.0
        LOG.info('Pulled console log of instance %s from %s as %s: %d '
                 'file(s), %d bytes in %.2fs (%.1f MB/s, %d bytes on the '
                 'wire, %d bulk message(s) rejected)', self.instance_uuid,
                 self.host, name, len(files), self.fetched, seconds,
                 rate / 1e6, self.wire, self.bulk_rejected)
        return PullResult(self.fetched, len(files), seconds, rate, self.wire,
                          self.stash_id, released, self.bulk_bytes, roots,
                          token, self.bulk_rejected, name)

    def _installed_before(self):
        """The history name of this stash's import here, if installed."""
        if self.stash_id is None:
            return None
        from nova_consolelog import history_import
        try:
            return history_import.Ledger(self.chain).installed(
                import_id_for(self.host, self.stash_id))
        except exception.ConsoleLogError:
            return None

    def _check_on_disk(self, pool, imp):
        """Check every block on disk; fetch the bad ones again.

        A block fails when a message was damaged or forged (anybody with
        the bus credentials can publish into our bulk queue) or the disk
        did not keep what was written: its bytes are read again with chunk
        calls, ``pull_retries`` rounds at most.
        """
        for attempt in range(self.retries + 1):
            bad = imp.verify()
            if bad:
                LOG.warning('Console-log pull of instance %s from %s: %d '
                            'block(s) did not match the source\'s hash list '
                            '(%s); reading them again', self.instance_uuid,
                            self.host, len(bad), ', '.join(
                                '%s@%d' % (n, lo) for n, lo, _hi in bad[:5]))
            missing = imp.missing()
            if not missing and imp.complete():
                return
            if attempt == self.retries:
                break
            # Chunk by chunk, ``pull_window`` in flight: a hole may be a
            # whole file (a source before 1.3 has one digest per file).
            pieces = collections.deque(
                (name, at, min(at + self.chunk_size, hi))
                for name, holes in missing.items() for lo, hi in holes
                for at in range(lo, hi, self.chunk_size))
            futures = {}
            while pieces or futures:
                while pieces and len(futures) < self.window:
                    name, lo, hi = pieces.popleft()
                    futures[pool.submit(self._fetch, name, lo, hi)] = (
                        name, lo)
                done, _ = concurrent.futures.wait(
                    futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    name, lo = futures.pop(future)
                    data, _wire = future.result()
                    imp.write(name, lo, data)
        raise self._failed('bytes still do not match the source\'s hash '
                           'list after %d round(s)' % (self.retries + 1))

    def _deliver(self, imp, st, offset, data, wire):
        """Take ``data`` at ``offset``; write what is contiguous.

        Progress is recorded durably (``Import.checkpoint``) every
        ``_CHECKPOINT_BYTES`` and at the end of the file; the bytes are
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
                st.contiguous - st.checkpoint >= _CHECKPOINT_BYTES):
            imp.checkpoint(st.f.name, st.contiguous)
            st.checkpoint = st.contiguous
        self._report()

    def _pull_file(self, pool, imp, st):
        """Fetch what is left of file ``st.f`` with chunk calls."""
        # Bytes the bulk channel delivered out of order past a hole are
        # fetched again in order: simpler than merging, and rare.
        st.pending.clear()
        inflight = {}
        next_offset = st.contiguous

        def submit():
            nonlocal next_offset
            stop = min(next_offset + self.chunk_size, st.end)
            inflight[pool.submit(self._fetch, st.f.name, next_offset,
                                 stop)] = next_offset
            next_offset = stop

        while st.contiguous < st.end:
            while (next_offset < st.end and
                   len(inflight) + len(st.pending) < self.window):
                submit()
            done, _ = concurrent.futures.wait(
                inflight, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                offset = inflight.pop(future)
                try:
                    data, wire = future.result()
                except BaseException:
                    # Let the other workers give up at their next attempt.
                    self.stopping = True
                    for other in inflight:
                        other.cancel()
                    raise
                self._deliver(imp, st, offset, data, wire)

    # -- the bulk channel (RPC 1.2) --------------------------------------

    def _bulk_supported(self):
        supported = getattr(self.rpcapi, 'bulk_supported', None)
        return supported is not None and supported(self.host)

    def _pull_bulk(self, imp, states):
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
                stop = min(pos + self.bulk_window, st.end)
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
            with cl_bulk.Receiver(
                    self.rpcapi.bulk_url, BULK_PREFETCH,
                    getattr(self.rpcapi, 'bulk_ssl', False)) as receiver:
                self._bulk_loop(imp, by_name, windows, receiver, callers)
        except exception.BulkUnavailable as e:
            LOG.warning('Console-log pull of instance %s from %s: bulk '
                        'channel failed (%s); reading the rest with chunk '
                        'calls', self.instance_uuid, self.host, e)
        except exception.PeerUnsupported as e:
            LOG.info('Console-log pull of instance %s: %s; reading chunk '
                     'calls', self.instance_uuid, e)
        finally:
            callers.shutdown(wait=False, cancel_futures=True)
            # The chunk path writes next: let the sink finish first.
            self._sink.shutdown(wait=True)

    def _bulk_loop(self, imp, by_name, windows, receiver, callers):
        self._queue_name = receiver.queue_name
        inflight = []
        while windows or inflight:
            while windows and len(inflight) < BULK_WINDOWS:
                w = windows.popleft()
                w.future = callers.submit(self._send_window, w,
                                          receiver.queue_name)
                inflight.append(w)
            if self.deadline.remaining() <= 0:
                raise self._failed('pull_timeout ran out on the bulk '
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
                                  self.instance_uuid, w.name, lo, hi)
                        data, wire = self._fetch(w.name, lo, hi)
                        self._sink.submit(self._deliver, imp,
                                          by_name[w.name], lo, data,
                                          wire).result()

    def _send_window(self, w, queue_name):
        timeout = max(1, min(self.rpc_timeout, self.deadline.remaining()))
        return self.rpcapi.send_range(
            self.ctxt, self.host, self.instance_uuid, w.name, w.start,
            w.end - w.start, queue_name, stash_id=self.stash_id,
            compress=self.bulk_compress, timeout=timeout,
            request_token=w.token if self.v13 else None)

    def _window_answered(self, w, now):
        try:
            summary = w.future.result()
        except (exception.PeerUnsupported, exception.BulkUnavailable):
            raise
        except _FINAL:
            # Bad input, no such file or stash: as final as on a chunk.
            raise
        except _RETRYABLE as e:
            LOG.warning('Console-log pull of instance %s from %s: bulk call '
                        'for %s [%d, %d) failed (%s); chunk calls',
                        self.instance_uuid, self.host, w.name, w.start,
                        w.end, e)
            w.error = e
            return
        if not isinstance(summary, dict):
            summary = {}
        w.summary = summary
        w.grace_end = now + min(BULK_GRACE, self.rpc_timeout)
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
            name, offset, length = cl_bulk.parse_headers(headers)
            binding = cl_bulk.frame_binding(headers)
        except ValueError as e:
            self._reject(e)
            return
        window = None
        for w in inflight:
            if w.holds(name, offset, length) and (
                    not self.v13 or binding == (w.token, self.instance_uuid,
                                                self.stash_id)):
                window = w
                break
        if window is None:
            if self.v13 and not any(binding[0] == w.token
                                    for w in self._settled_tokens):
                self._reject('not bound to a request of this pull')
            return
        if offset in window.received or offset in window.checking:
            return  # a duplicate; the first copy is checked on disk
        window.seen += 1
        if window.summary is not None:
            window.grace_end = time.monotonic() + min(BULK_GRACE,
                                                      self.rpc_timeout)
        window.checking[offset] = self._sink.submit(
            self._check_bulk_chunk, imp, by_name[name], headers, body)
        checking = _checking(inflight)
        if len(checking) > SINK_BACKLOG:
            concurrent.futures.wait(
                checking, return_when=concurrent.futures.FIRST_COMPLETED)

    def _reject(self, error):
        """Drop a bulk message we did not ask for; count it, say where."""
        self.bulk_rejected += 1
        if self.bulk_rejected in (1, 10, 100, 1000):
            LOG.warning('Console-log pull of instance %s from %s: %d bulk '
                        'message(s) in queue %s dropped (last: %s); '
                        'somebody else publishes into it', self.instance_uuid,
                        self.host, self.bulk_rejected, self._queue_name,
                        str(error)[:200])

    def _bad_bulk_message(self, error):
        LOG.warning('Console-log pull of instance %s from %s: bad bulk '
                    'message dropped: %s', self.instance_uuid, self.host,
                    str(error)[:200])

    def _check_bulk_chunk(self, imp, st, headers, body):
        """On the sink: decode and deliver one message.

        Returns the chunk's length, or None when it does not decode (the
        window's hole is read again with a chunk call). Its bytes are
        checked on disk against the source's hash list before the install.
        """
        try:
            _name, offset, raw, _sha256, _eof = cl_bulk.decode_chunk(
                headers, body)
        except ValueError as e:
            self._bad_bulk_message(e)
            return None
        self._deliver(imp, st, offset, raw, len(body))
        # Counted here, not when collected: a chunk delivered while the
        # channel fails is still one the bulk channel brought.
        self.bulk_bytes += len(raw)
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
                    self.bulk_rejected += 1
                    continue
                w.received[offset] = size
                w.got += size

    def _report(self):
        if self.progress is not None:
            self.progress(self.fetched, self.total)
        now = time.monotonic()
        if now - self._last_log >= 5 or self.fetched >= self.total:
            self._last_log = now
            seconds = now - self._started
            LOG.debug('Console-log pull of instance %s from %s: %d/%d bytes '
                      '(%.1f MB/s)', self.instance_uuid, self.host,
                      self.fetched, self.total,
                      self.fetched / seconds / 1e6 if seconds else 0.0)

    def _release(self, roots, token):
        try:
            self.rpcapi.release(self.ctxt, self.host, self.instance_uuid,
                                self.stash_id, roots, transfer_token=token,
                                puller_host=self.local_host)
            return True
        except Exception as e:
            LOG.warning('Console log of instance %s is installed, but %s did '
                        'not release its stash %s: %s (asked again by the '
                        'next retry; it expires there)', self.instance_uuid,
                        self.host, self.stash_id, str(e)[:300])
            return False


def pull(conf, rpcapi, source_host, instance_uuid, stash_id=None, chain=None,
         progress=None, ctxt=None, release=True, window=None,
         chunk_size=None, local_host=None):
    """Pull an instance's console-log chain from ``source_host``.

    :param conf: ConfigOpts with our options registered.
    :param rpcapi: an ``rpc.api.ConsoleLogAPI``.
    :param stash_id: the source's stash; None pulls its live chain (from
        the command line; a migration always pulls a stash).
    :param chain: the local ConsoleLogChain to import into; default the
        instance's chain under ``[consolelog] instances_path``.
    :param progress: callable ``progress(done_bytes, total_bytes)``.
    :param release: release the source's stash after a verified install.
    :param window: calls in flight (default ``pull_window``).
    :param chunk_size: bytes per call (default ``chunk_size``).
    :param local_host: this host's name, as the source hands the stash to
        it (default: ``[DEFAULT] host`` when registered, else the
        hostname).
    :returns: PullResult.
    :raises: PeerUnsupported when the source lacks the console-log RPC;
        TransferFailed when the pull cannot finish now (a later pull of the
        same source resumes); InvalidInput for a malformed uuid.
    """
    if chain is None:
        chain = cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                      conf=conf)
    if local_host is None:
        try:
            local_host = conf.host
        except Exception:
            local_host = socket.gethostname()
    puller = _Puller(conf, rpcapi, source_host, instance_uuid, stash_id,
                     chain, progress, ctxt, window, chunk_size)
    puller.local_host = local_host
    return puller.run(release)
