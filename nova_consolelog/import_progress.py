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

"""What an import has of each source file: written, durable, checked.

The bookkeeping behind ``history_import.Import``'s promises. Bytes are
counted as written when stored in the staging file, as durable once a
checkpoint synced them and recorded the watermark in the sidecar (a
resumed import does not fetch them again), and as checked only when
their whole block was read back from disk and matched the source's hash
list: a resumed part is checked again, and a block that does not match
is forgotten (counted as missing, to be fetched again).
"""

import hashlib
import json
import os

from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import names


def digests_id(digests):
    """One digest standing for every file's hash list of an import."""
    text = json.dumps(sorted((name, bs, list(blocks))
                             for name, (bs, blocks) in digests.items()))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def check_files(chain, files):
    """``files`` as ``[(name, size)]``, or InvalidInput."""
    try:
        files = [(name, size) for name, size in files]
    except (TypeError, ValueError):
        raise exception.InvalidInput(
            reason='files must be a list of (name, size) pairs')
    seen = set()
    for name, size in files:
        chain.check_member_name(name)
        names.check_count('size of %s' % name, size)
        if name in seen:
            raise exception.InvalidInput(
                reason='%s is listed twice' % name)
        seen.add(name)
    return files


def check_digests(files, digests):
    """The hash lists of ``files`` with bytes, or InvalidInput."""
    if not isinstance(digests, dict):
        raise exception.InvalidInput(reason='digests must be a dict')
    for name, size in files:
        if not size:
            continue
        try:
            block_size, blocks = digests[name]
        except (KeyError, TypeError, ValueError):
            raise exception.InvalidInput(
                reason='no hash list for %s' % name)
        names.check_count('block size of %s' % name, block_size)
        if block_size < 1 or not isinstance(blocks, (list, tuple)) or (
                len(blocks) != (size + block_size - 1) // block_size):
            raise exception.InvalidInput(
                reason='the hash list of %s does not cover %d bytes' % (
                    name, size))
    return {name: digests[name] for name, size in files if size}


def read_digest(fd, offset, length):
    """sha256 of ``length`` bytes at ``offset`` of ``fd``, read from disk."""
    digest = hashlib.sha256()
    while length > 0:
        data = os.pread(fd, min(fileutils.COPY_CHUNK, length), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)
        length -= len(data)
    return digest.hexdigest()


class Progress:
    """Written, durable and checked ranges of one import's source files.

    :param files: ``[(name, size)]`` of the source chain, oldest first.
    :param digests: the checked hash lists (``check_digests``).
    :param max_bytes: the chain's ``history_max_bytes``.
    """

    def __init__(self, import_id, files, digests, max_bytes):
        self.import_id = import_id
        self.digests = digests
        self.size = sum(size for _name, size in files)
        self.layout = {}
        position = 0
        for name, size in files:
            self.layout[name] = (position, size)
            position += size
        self.skip = self._aligned_skip(max_bytes)
        self.written = {}
        self.durable = {}
        self.checked = {name: set() for name, _size in files}

    def _aligned_skip(self, max_bytes):
        """Bytes left out: beyond ``history_max_bytes``, block-aligned.

        The first kept byte starts a block of its file, so that every kept
        block is checked on disk whole.
        """
        skip = max(0, self.size - max_bytes)
        for name, (position, size) in self.layout.items():
            if position <= skip < position + size:
                block_size = self.digests[name][0]
                return position + (skip - position) // block_size * \
                    block_size
        return skip

    def resume(self, durable):
        """Start from the watermark ``durable`` a sidecar recorded."""
        self.durable = durable
        for name, upto in durable.items():
            self.written[name] = [(0, upto)]

    def valid_durable(self, durable):
        """True when ``durable`` fits the files (a sidecar may be bad)."""
        for name, upto in durable.items():
            if name not in self.layout or isinstance(upto, bool) or (
                    not isinstance(upto, int)) or (
                    not 0 <= upto <= self.layout[name][1]):
                return False
        return True

    def range(self, name):
        if name not in self.layout:
            raise exception.InvalidInput(
                reason='%.64r is not a file of import %s' % (
                    name, self.import_id))
        position, size = self.layout[name]
        first = min(size, max(0, self.skip - position))
        return position, size, first

    def wanted(self, name):
        """``(start, end)`` of source file ``name`` still needed."""
        _position, size, first = self.range(name)
        return max(first, self.durable.get(name, 0)), size

    def wrote(self, name, offset, length):
        """``length`` bytes at ``offset`` of ``name`` are stored, unchecked."""
        self.written.setdefault(name, []).append((offset, offset + length))
        block_size = self.digests[name][0]
        checked = self.checked[name]
        for index in range(offset // block_size,
                           (offset + length - 1) // block_size + 1):
            checked.discard(index)

    def missing(self):
        """{name: [(start, end)]} of bytes not written yet."""
        result = {}
        for name, (_position, size) in self.layout.items():
            _p, _s, first = self.range(name)
            holes = []
            at = first
            for lo, hi in sorted(self.written.get(name, [])):
                if lo > at:
                    holes.append((at, min(lo, size)))
                at = max(at, hi)
            if at < size:
                holes.append((at, size))
            if holes:
                result[name] = holes
        return result

    def verify(self, fd):
        """Check every written, unchecked block of ``fd`` on disk.

        Returns ``[(name, start, end)]`` of the blocks that do not match;
        they are forgotten (count as not written). OSError propagates.
        """
        bad = []
        missing = self.missing()
        for name, (position, size) in self.layout.items():
            if not size:
                continue
            _p, _s, first = self.range(name)
            block_size, blocks = self.digests[name]
            holes = missing.get(name, [])
            for index in range(-(-first // block_size), len(blocks)):
                if index in self.checked[name]:
                    continue
                lo = index * block_size
                hi = min(lo + block_size, size)
                if any(h_lo < hi and lo < h_hi for h_lo, h_hi in holes):
                    continue  # not all there yet
                actual = read_digest(fd, position + lo - self.skip, hi - lo)
                if actual == blocks[index]:
                    self.checked[name].add(index)
                    continue
                bad.append((name, lo, hi))
                self.forget(name, lo, hi)
        return bad

    def forget(self, name, lo, hi):
        """Bytes [lo, hi) of ``name`` are wrong: count them as missing."""
        kept = []
        for w_lo, w_hi in self.written.get(name, []):
            if w_lo < lo:
                kept.append((w_lo, min(w_hi, lo)))
            if w_hi > hi:
                kept.append((max(w_lo, hi), w_hi))
        self.written[name] = kept
        if self.durable.get(name, 0) > lo:
            self.durable[name] = lo

    def complete(self):
        """True when every byte is written and checked on disk."""
        if self.missing():
            return False
        for name, (_position, size) in self.layout.items():
            if not size:
                continue
            _p, _s, first = self.range(name)
            block_size, blocks = self.digests[name]
            wanted = set(range(-(-first // block_size), len(blocks)))
            if not wanted <= self.checked[name]:
                return False
        return True
