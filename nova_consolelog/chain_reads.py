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

"""Reading a console-log chain: what a console read returns.

``ChainReads`` is the read side of ``chain.ConsoleLogChain``: the merged
tail (nova's ``os-getConsoleOutput`` view, extended to imported history),
paged reads over the whole stream, chunk reads of one member for a peer's
pull, and ``describe`` (sizes, hash lists, a tail sample) for the RPC
endpoint. Every read works on a snapshot (``chain_snapshot``: every
member opened at one instant, consistent across a virtlogd rollover), so
it never splices two generations of the files. A stray ``OSError`` of a
read becomes ``ChainFileUnreadable`` (``typed_io``).

Why a module of its own: the chain class had grown to hold listing,
snapshots, reading, history and retention in 500 lines; the read side
depends only on the snapshot, and is what a reviewer of "does our read
match nova's" needs to see.
"""

import collections
import os

from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import names
from nova_consolelog.objects import console_log as cl_objects


# Result of a paged read: ``data`` starts at stream offset ``start`` (which
# is later than the offset asked for when older bytes are gone: then
# ``truncated`` is True); ``next`` is the offset to ask for next.
ReadResult = collections.namedtuple(
    'ReadResult', ['data', 'start', 'next', 'truncated'])


def last_lines(data, length):
    """The last ``length`` lines of ``data``, cut as nova does.

    nova's compute manager (``_tail_log``) does ``split(b'\\n')``, keeps
    the last ``length`` items and joins them; ``length`` 0 gives nothing,
    None everything.
    """
    if length is None:
        return data
    names.check_count('length', length)
    if length == 0:
        return b''
    return b'\n'.join(data.split(b'\n')[-length:])


def typed_io(method):
    """Turn a stray OSError of a read into ChainFileUnreadable."""
    return fileutils.typed_os_errors(method, lambda args, kwargs, e: (
        exception.ChainFileUnreadable(path=e.filename or args[0].directory,
                                      reason=e.strerror or str(e))))


class ChainReads:
    """The reads of ``ConsoleLogChain``.

    A mixin: it uses the chain's ``conf``, ``log_name``, ``base_offset``,
    ``_snapshot``, ``_open`` and ``_check_member_name``.
    """

    def _max_bytes(self, max_bytes):
        if max_bytes is None:
            return self.conf.consolelog.max_console_bytes
        return names.check_count('max_bytes', max_bytes)

    @typed_io
    def read_tail(self, max_bytes=None, length=None, read_inodes=None):
        """Last ``max_bytes`` of the stream, then the last ``length`` lines.

        Equal to nova's ``_get_console_output_file`` (then the compute
        manager's ``length`` cut) on a chain without history. Reads only
        the tails it returns: I/O is proportional to ``max_bytes``.
        ``read_inodes``: a set that gets the ``(st_dev, st_ino)`` of every
        file of the snapshot read, so that a caller merging other files
        can leave out those it already has (see migration._caught_tail).
        """
        max_bytes = self._max_bytes(max_bytes)
        if length is not None:
            names.check_count('length', length)
        parts = []
        with self._snapshot() as snap:
            if read_inodes is not None:
                # Only files whose bytes the read can hold: a backup left
                # out of the stream (behind a gap) was not read.
                for m in snap.stream():
                    st = os.fstat(m.fd)
                    read_inodes.add((st.st_dev, st.st_ino))
            wanted = max_bytes
            for m in reversed(snap.stream()):
                if wanted <= 0:
                    break
                n = min(wanted, m.size)
                parts.append(fileutils.pread_exact(m.fd, n, m.size - n))
                wanted -= n
        return last_lines(b''.join(reversed(parts)), length)

    @typed_io
    def read(self, start, max_bytes=None):
        """Paged read over the whole stream; returns a ReadResult.

        ``start`` is an absolute stream offset; a negative ``start`` means
        the last ``-start`` bytes. A start older than the first retained
        byte is moved up to it and ``truncated`` is True. A start beyond
        the end (the stream shrank: virtlogd dropped a backup, or a QEMU
        start truncated the log) gives no data with ``start`` = ``next`` =
        the current end, so that a polling reader resynchronises instead
        of waiting forever.
        """
        if isinstance(start, bool) or not isinstance(start, int):
            raise exception.InvalidInput(
                reason='start must be an integer, not %r' % (start,))
        max_bytes = self._max_bytes(max_bytes)
        base = self.base_offset()
        with self._snapshot() as snap:
            stream = snap.stream()
            end = base + sum(m.size for m in stream)
            asked = end + start if start < 0 else start
            truncated = max(asked, 0) < base
            begin = max(asked, base)
            if begin > end:
                return ReadResult(b'', end, end, False)
            parts = []
            position = base
            stop = min(end, begin + max_bytes)
            for m in stream:
                lo, hi = max(begin, position), min(stop, position + m.size)
                if lo < hi:
                    parts.append(fileutils.pread_exact(m.fd, hi - lo,
                                                       lo - position))
                position += m.size
        data = b''.join(parts)
        return ReadResult(data, begin, begin + len(data), truncated)

    @typed_io
    def read_chunk(self, name, offset, length):
        """``(data, eof)``: up to ``length`` bytes of member ``name``.

        ``name`` must be a member's exact name, never a path. ``eof`` is
        True when the data reaches the file's size at read time (a growing
        file may have more later). ``length`` is bounded by the caller.
        """
        self._check_member_name(name)
        names.check_count('offset', offset)
        names.check_count('length', length)
        fd = self._open(name)
        try:
            size = os.fstat(fd).st_size
            if offset > size:
                raise exception.InvalidInput(
                    reason='offset %d is beyond the end of %s (%d bytes)' % (
                        offset, name, size))
            data = fileutils.pread_exact(fd, min(length, size - offset),
                                         offset)
        finally:
            os.close(fd)
        return data, offset + len(data) >= size

    @typed_io
    def describe(self, host, instance_uuid, checksums=False, tail_bytes=0,
                 stash_id=None, live_names=None):
        """A ConsoleLogSet of this chain (every member, gaps included).

        ``live_names``: names still being written. Default: ``console.log``
        of an instance directory (``stash_id`` None), nothing in a stash.
        No sha256 is computed for a live file. ``tail_bytes`` > 0 gives the
        files the tails that make up the last ``tail_bytes`` of the listed
        chain, so that ``ConsoleLogSet.merged_tail`` works without files.
        """
        names.check_count('tail_bytes', tail_bytes)
        if live_names is None:
            live_names = () if stash_id is not None else (self.log_name,)
        base = self.base_offset()
        with self._snapshot() as snap:
            tails = {}
            wanted = tail_bytes
            for m in reversed(snap.members):
                n = min(wanted, m.size)
                tails[m.file.name] = (
                    fileutils.pread_exact(m.fd, n, m.size - n) if n else b'')
                wanted -= n
            files = []
            for position, m in enumerate(snap.members):
                live = m.file.name in live_names
                files.append(cl_objects.ConsoleLogFile(
                    name=m.file.name, kind=m.file.kind, position=position,
                    size=m.size, mtime=m.file.mtime, live=live,
                    sha256=(fileutils.sha256_fd(m.fd, m.size)
                            if checksums and not live else None),
                    tail=tails[m.file.name] if tail_bytes else None))
        return cl_objects.ConsoleLogSet(
            instance_uuid=instance_uuid, host=host, stash_id=stash_id,
            base_offset=base, files=files)
