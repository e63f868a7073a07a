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

"""Hash lists: a sha256 per block of a file, and a root standing for all.

Why: a destination must install only bytes the source vouched for over
RPC, whichever way they travelled (a bulk frame on a queue anybody with
the bus credentials can publish to, a chunk call), and it must check what
is on its disk, resumed parts included. One digest per file would find a
bad byte only after the whole file, with no way to tell which part to
fetch again; a digest per block finds it and re-fetches one block. The
source computes the list once, when it stashes (or pins) a chain, and
keeps it: neither a second describe nor the release reads the files again.

The root is the sha256 of the file size (8 bytes, big endian), the block
size (8 bytes) and the block digests (32 bytes each): two files with the
same root hold the same bytes.
"""

import hashlib
import os

from nova_consolelog import exception

# One block per MiB: a 64 MiB chain has 64 digests (4 KiB of hex in a
# reply), a damaged frame costs one MiB to fetch again.
BLOCK_SIZE = 1024 * 1024
# Blocks a file may have in one description: 64 GiB at BLOCK_SIZE, far
# beyond what virtlogd and history_max_bytes keep; bounds a reply.
MAX_BLOCKS = 65536
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 64 * 1024 * 1024
_READ = 1024 * 1024


def block_count(size, block_size):
    return (size + block_size - 1) // block_size


def fd_blocks(fd, size, block_size=BLOCK_SIZE, offset=0):
    """Digests of the blocks of ``[offset, size)`` of open file ``fd``.

    ``offset`` is a multiple of ``block_size``.

    :raises ChecksumMismatch: the file is shorter than ``size``.
    """
    digests = []
    position = offset
    while position < size:
        end = min(position + block_size, size)
        digest = hashlib.sha256()
        while position < end:
            data = os.pread(fd, min(_READ, end - position), position)
            if not data:
                raise exception.ChecksumMismatch(
                    name=str(fd), offset=position, expected='%d bytes' % size,
                    actual='%d bytes' % position)
            digest.update(data)
            position += len(data)
        digests.append(digest.hexdigest())
    return digests


def root(size, block_size, blocks):
    """The digest standing for a whole file (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(size.to_bytes(8, 'big'))
    digest.update(block_size.to_bytes(8, 'big'))
    for block in blocks:
        digest.update(bytes.fromhex(block))
    return digest.hexdigest()


def check(size, block_size, blocks):
    """Validate a hash list from the wire or disk; returns ``blocks``.

    :raises InvalidInput: a list that cannot describe ``size`` bytes.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or \
            not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise exception.InvalidInput(
            reason='block size %r is outside [%d, %d]' % (
                block_size, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE))
    if not isinstance(blocks, (list, tuple)) or len(blocks) > MAX_BLOCKS:
        raise exception.InvalidInput(reason='hash list is not a list of at '
                                            'most %d digests' % MAX_BLOCKS)
    if len(blocks) != block_count(size, block_size):
        raise exception.InvalidInput(
            reason='%d digests for %d bytes in blocks of %d' % (
                len(blocks), size, block_size))
    for block in blocks:
        if not is_hex_digest(block):
            raise exception.InvalidInput(reason='malformed block digest')
    return list(blocks)


def is_hex_digest(value):
    return (isinstance(value, str) and len(value) == 64 and
            all(c in '0123456789abcdef' for c in value))
