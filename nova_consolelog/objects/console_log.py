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

"""Versioned objects describing console logs and carrying their bytes.

A host's console log for one instance is a *chain* of files, listed oldest
first in a ``ConsoleLogSet``: imported history, then virtlogd's rotation
backups ``console.log.N`` … ``console.log.0``, then ``console.log``. Reading
the files in that order gives the console output in the order the guest
wrote it.
"""

import base64
import hashlib
import zlib

from oslo_utils import versionutils
from oslo_versionedobjects import fields

from nova_consolelog.objects import base
from nova_consolelog.objects import fields as cl_fields


# zlib level 1: console text shrinks 3-5 times at about 80 MB/s; higher
# levels gain little on it and cost much more.
ZLIB_LEVEL = 1
_SAMPLE = 64 * 1024
_SAMPLE_RATIO = 0.9


def _compressible(raw):
    """Whether the first bytes of ``raw`` shrink by at least 10 %."""
    if len(raw) <= _SAMPLE:
        return True
    sample = raw[:_SAMPLE]
    return len(zlib.compress(sample, ZLIB_LEVEL)) < _SAMPLE * _SAMPLE_RATIO


@base.ConsoleLogObjectRegistry.register
class ConsoleLogFile(base.ConsoleLogObject):
    """One file of a console-log chain."""

    # Version 1.0: Initial version
    # Version 1.1: Added blocks
    VERSION = '1.1'

    fields = {
        # File name inside the instance directory or stash, never a path.
        'name': fields.StringField(),
        'kind': cl_fields.FileKindField(),
        # Index in the chain, 0 being the oldest file.
        'position': fields.NonNegativeIntegerField(),
        'size': fields.NonNegativeIntegerField(),
        # Modification time, seconds since the epoch.
        'mtime': fields.FloatField(),
        # Hex sha256 of the whole file; None until computed, and for a file
        # that is still being written.
        'sha256': fields.StringField(nullable=True, default=None),
        # True while virtlogd may still append to the file.
        'live': fields.BooleanField(default=False),
        # The last bytes of the file, for a merge by a caller that cannot
        # read the file itself; None when not requested.
        'tail': cl_fields.BytesField(nullable=True, default=None),
        # Hex sha256 of every ``block_size`` block of the file's first
        # ``size`` bytes (see hashlist), as the source computed them when
        # it stashed or pinned the file; None when not described so.
        'blocks': fields.ListOfStringsField(nullable=True, default=None),
    }

    def obj_make_compatible(self, primitive, target_version):
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 1):
            primitive.pop('blocks', None)


@base.ConsoleLogObjectRegistry.register
class ConsoleLogSet(base.ConsoleLogObject):
    """The console-log chain of one instance on one host, oldest first."""

    # Version 1.0: Initial version
    # Version 1.1: Added block_size, transfer_token; ConsoleLogFile 1.1
    VERSION = '1.1'

    obj_relationships = {
        'files': [('1.0', '1.0'), ('1.1', '1.1')],
    }

    fields = {
        'instance_uuid': fields.UUIDField(),
        'host': fields.StringField(),
        # None for the chain in the instance directory; the stash's id for a
        # chain moved aside during a live migration.
        'stash_id': fields.StringField(nullable=True, default=None),
        # Position of the chain's first byte in the instance's whole console
        # stream: bytes dropped earlier (history retention) are counted here
        # so that byte offsets stay stable across retention and migration.
        'base_offset': fields.NonNegativeIntegerField(default=0),
        'files': fields.ListOfObjectsField('ConsoleLogFile', default=[]),
        # Of a transfer opened with RPC 1.3 (open_console_log_transfer):
        # the block size of the files' hash lists, and the token the source
        # accepts a release of this stash with, from this puller only.
        'block_size': fields.NonNegativeIntegerField(nullable=True,
                                                     default=None),
        'transfer_token': fields.StringField(nullable=True, default=None),
    }

    def obj_make_compatible(self, primitive, target_version):
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 1):
            primitive.pop('block_size', None)
            primitive.pop('transfer_token', None)

    @property
    def total_size(self):
        return sum(f.size for f in self.files)

    def merged_tail(self, max_bytes):
        """The last ``max_bytes`` of the chain, from the files' tails.

        For callers without access to the files (the API layer, a peer).
        The result is exact as long as every file's ``tail`` holds at least
        the part of the file that falls within the last ``max_bytes``.
        """
        if max_bytes < 0:
            raise ValueError('max_bytes must not be negative')
        parts = []
        wanted = max_bytes
        for f in reversed(self.files):
            if wanted <= 0:
                break
            data = f.tail or b''
            piece = data[-wanted:] if len(data) > wanted else data
            parts.append(piece)
            wanted -= len(piece)
        return b''.join(reversed(parts))


@base.ConsoleLogObjectRegistry.register
class ConsoleLogChunk(base.ConsoleLogObject):
    """Bytes of one chain file at an offset, as answered to a pull."""

    # Version 1.0: Initial version
    # Version 1.1: Added compression; data may be zlib-compressed
    VERSION = '1.1'

    fields = {
        'instance_uuid': fields.UUIDField(),
        'stash_id': fields.StringField(nullable=True, default=None),
        'name': fields.StringField(),
        'offset': fields.NonNegativeIntegerField(),
        'data': cl_fields.BytesField(),
        # True when the chunk ends at the end of the file as it was read.
        'eof': fields.BooleanField(),
        # Hex sha256 of the uncompressed data.
        'sha256': fields.StringField(),
        'compression': cl_fields.CompressionField(
            default=cl_fields.Compression.NONE),
    }

    def obj_make_compatible(self, primitive, target_version):
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 1):
            compression = primitive.pop('compression',
                                        cl_fields.Compression.NONE)
            if compression == cl_fields.Compression.ZLIB:
                raw = zlib.decompress(base64.b64decode(primitive['data']))
                primitive['data'] = base64.b64encode(raw).decode('ascii')

    @classmethod
    def from_bytes(cls, raw, compress=False, **kwargs):
        """Build a chunk for ``raw`` bytes, compressed when it pays.

        A sample is compressed first: data that does not shrink (random
        bytes, already compressed output) is sent as it is without paying
        for a full compression (about 20 ms per MiB).
        """
        compression = cl_fields.Compression.NONE
        data = raw
        if compress and raw and _compressible(raw):
            packed = zlib.compress(raw, ZLIB_LEVEL)
            if len(packed) < len(raw):
                compression = cl_fields.Compression.ZLIB
                data = packed
        return cls(data=data, compression=compression,
                   sha256=hashlib.sha256(raw).hexdigest(), **kwargs)

    def raw_data(self, max_length=None):
        """The uncompressed bytes of the chunk.

        ``max_length``: the most bytes the caller asked for; data that
        would inflate beyond it is refused without being inflated whole (a
        small message must not cost us hundreds of MiB).

        :raises ValueError: compressed data that does not decompress, or
            more than ``max_length`` bytes.
        """
        data = self.data
        if self.compression == cl_fields.Compression.ZLIB:
            inflater = zlib.decompressobj()
            try:
                if max_length is None:
                    data = inflater.decompress(data)
                else:
                    data = inflater.decompress(data, max_length + 1)
            except zlib.error as e:
                raise ValueError('chunk data does not decompress: %s' % e)
            if not inflater.eof:
                raise ValueError('chunk data inflates past %s bytes or is '
                                 'cut short' % max_length)
        if max_length is not None and len(data) > max_length:
            raise ValueError('chunk holds %d bytes, more than the %d asked '
                             'for' % (len(data), max_length))
        return data
