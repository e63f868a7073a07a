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

"""The chunk path of a pull: ``read_console_log_chunk`` calls.

Every source speaks it (RPC 1.0). It reads a file in ``chunk_size``
pieces with ``pull_window`` calls in flight, each call retried on its own
(``PullJob.retrying``); it also reads whatever the bulk channel did not
deliver, and the blocks that failed the check on disk. The bytes are
written through ``PullJob.deliver`` and checked against the source's hash
list on disk before the install, never here.
"""

import collections
import concurrent.futures

from nova_consolelog import exception


class ChunkPath:
    """Chunk calls of one pull (``job``, a ``PullJob``)."""

    def __init__(self, job):
        self.job = job

    def fetch(self, name, offset, end):
        """Bytes [offset, end) of ``name``, chunk-verified, with retries.

        A short answer (the source's chunk_size is smaller) continues from
        the last verified byte.
        """
        parts = []
        wire = 0
        pos = offset
        while pos < end:
            chunk = self.job.retrying(
                '%s@%d' % (name, pos),
                lambda timeout, p=pos: self._read_verified(
                    name, p, end - p, timeout))
            data, size_on_wire, eof = chunk
            parts.append(data)
            wire += size_on_wire
            pos += len(data)
            if pos < end and (eof or not data):
                raise self.job.failed(
                    '%s ends at %d, %d bytes were described' % (
                        name, pos, end))
        return b''.join(parts), wire

    def _read_verified(self, name, offset, length, timeout):
        """One chunk call; the bytes are checked on disk, not here."""
        chunk = self.job.rpcapi.read_chunk(
            self.job.ctxt, self.job.host, self.job.instance_uuid, name, offset,
            min(length, self.job.chunk_size), stash_id=self.job.stash_id,
            compress=self.job.compress, timeout=timeout)
        if chunk.offset != offset or chunk.name != name:
            raise exception.ChecksumMismatch(
                name=name, offset=offset, expected='%s@%d' % (name, offset),
                actual='%.64s@%d' % (chunk.name, chunk.offset))
        data = chunk.raw_data(max_length=length)
        return data, len(chunk.data), chunk.eof

    def pull_file(self, pool, imp, st):
        """Fetch what is left of file ``st.f`` with chunk calls."""
        # Bytes the bulk channel delivered out of order past a hole are
        # fetched again in order: simpler than merging, and rare.
        st.pending.clear()
        inflight = {}
        next_offset = st.contiguous

        def submit():
            nonlocal next_offset
            stop = min(next_offset + self.job.chunk_size, st.end)
            inflight[pool.submit(self.fetch, st.f.name, next_offset,
                                 stop)] = next_offset
            next_offset = stop

        while st.contiguous < st.end:
            while (next_offset < st.end and
                   len(inflight) + len(st.pending) < self.job.window):
                submit()
            done, _ = concurrent.futures.wait(
                inflight, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                offset = inflight.pop(future)
                try:
                    data, wire = future.result()
                except BaseException:
                    # Let the other workers give up at their next attempt.
                    self.job.stopping = True
                    for other in inflight:
                        other.cancel()
                    raise
                self.job.deliver(imp, st, offset, data, wire)

    def refetch(self, pool, imp, missing):
        """Fetch the ``missing`` ranges again, ``pull_window`` in flight.

        ``missing`` is ``Import.missing()``: ``{name: [(lo, hi), ...]}``;
        the bytes are written in place and checked again by the caller.
        """
        # Chunk by chunk, ``pull_window`` in flight: a hole may be a
        # whole file (a source before 1.3 has one digest per file).
        pieces = collections.deque(
            (name, at, min(at + self.job.chunk_size, hi))
            for name, holes in missing.items() for lo, hi in holes
            for at in range(lo, hi, self.job.chunk_size))
        futures = {}
        while pieces or futures:
            while pieces and len(futures) < self.job.window:
                name, lo, hi = pieces.popleft()
                futures[pool.submit(self.fetch, name, lo, hi)] = (
                    name, lo)
            done, _ = concurrent.futures.wait(
                futures, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                name, lo = futures.pop(future)
                data, _wire = future.result()
                imp.write(name, lo, data)
