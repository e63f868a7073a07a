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

"""The frames of the bulk channel (RPC 1.2/1.3): headers and bodies.

One chunk of a console-log file travels as one binary AMQP message
(``rpc.bulk``): the body is the chunk's bytes (zlib level 1 when a sample
shrinks), the headers say ``name``, ``offset``, ``length``, ``sha256``
(of the raw bytes), ``data_compression`` (kombu itself acts on a header
named ``compression``) and ``eof``; with RPC 1.3 also ``token``,
``instance_uuid`` and ``stash_id``, which bind the frame to the request it
answers (``frame_binding``).

Why a module of its own: this is the part a hostile publisher reaches.
Everything in a frame comes from the bus, where anyone holding its
credentials can publish: headers are type-checked and bounded, a declared
length above ``MAX_CHUNK`` is refused and decompression stops at the
declared length (a 1 KiB frame inflating to 250 MiB costs nothing). The
source builds frames with ``chunk_headers``; the destination reads them
with ``parse_headers``, ``frame_binding`` and ``decode_chunk``.
"""

import re
import zlib

from nova_consolelog import exception
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields


CONTENT_TYPE = 'application/octet-stream'


# The largest chunk a source sends: the largest [consolelog] chunk_size. A
# frame declaring more, or carrying a larger body, is refused unread.
MAX_CHUNK = 8 * 1024 * 1024


# Chain file names are short (console.log.N, history names); anything
# longer, or with control characters, is not one of ours.
MAX_NAME = 64


_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')


MAX_OFFSET = 2 ** 63 - 1


# instance_uuid and stash_id of a binding: a uuid or a stash id.
_MAX_BINDING = 64


def chunk_headers(name, offset, length, sha256, compression, eof,
                  token=None, instance_uuid=None, stash_id=None):
    """The AMQP headers of a bulk chunk.

    With a ``token`` (the puller's per-request secret), ``instance_uuid``
    and ``stash_id`` (None for the live chain) are added too, so that the
    puller accepts the frame only for the request it answers.
    """
    headers = {'name': name, 'offset': offset, 'length': length,
               'sha256': sha256, 'data_compression': compression,
               'eof': eof}
    if token is not None:
        headers.update(token=token, instance_uuid=instance_uuid,
                       stash_id=stash_id)
    return headers


def _echo(headers):
    """A short form of headers for an error message."""
    return exception.bounded(repr(headers), 200)


def frame_binding(headers):
    """``(token, instance_uuid, stash_id)`` of a received bulk message.

    Each is None when the frame does not carry it (a source of an older
    release sends none); the caller decides whether that is acceptable
    and compares the values with its request's.

    :raises: ValueError when present values have the wrong type or form:
        ``token`` must be 32 lowercase hex digits, ``instance_uuid`` and
        ``stash_id`` strings of at most 64 characters or None.
    """
    if not isinstance(headers, dict):
        raise ValueError('bulk message without headers')
    token = headers.get('token')
    if 'token' in headers and not names.is_token(token):
        raise ValueError('bulk message with a malformed token %s' % (
            exception.bounded(repr(token), 80),))
    found = [token]
    for key in ('instance_uuid', 'stash_id'):
        value = headers.get(key)
        if value is not None and not (isinstance(value, str) and
                                      len(value) <= _MAX_BINDING):
            raise ValueError('bulk message with a malformed %s %s' % (
                key, exception.bounded(repr(value), 80)))
        found.append(value)
    return tuple(found)


def parse_headers(headers):
    """``(name, offset, length)`` of a received bulk message.

    What the receiving thread needs to place a message in its window; the
    rest (decompression, the caller's sha256 check) can run elsewhere
    (``decode_chunk``).

    :raises: ValueError for headers that do not describe a chunk.
    """
    if not isinstance(headers, dict):
        raise ValueError('bulk message without headers')
    try:
        name = headers['name']
        offset = headers['offset']
        length = headers['length']
    except KeyError as e:
        raise ValueError('bulk message without header %s' % (
            exception.bounded(str(e), 80),))
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and
            not _CONTROL_RE.search(name) and _count(offset) and
            _count(length) and offset <= MAX_OFFSET):
        raise ValueError('bulk message with malformed headers %s' % (
            _echo(headers),))
    if length > MAX_CHUNK:
        raise ValueError('bulk chunk %s@%d declares %d bytes, more than '
                         'the %d allowed' % (name, offset, length,
                                             MAX_CHUNK))
    return name, offset, length


def _count(value):
    """A non-negative int (not a bool)."""
    return (isinstance(value, int) and not isinstance(value, bool) and
            value >= 0)


def decode_chunk(headers, body):
    """``(name, offset, raw, sha256, eof)`` of a received bulk message.

    Checks the headers' types and decompresses; the caller checks the
    sha256 and that the range is one it asked for.

    :raises: ValueError for a message that is not a well-formed chunk.
    """
    name, offset, length = parse_headers(headers)
    try:
        sha256 = headers['sha256']
        compression = headers['data_compression']
        eof = headers['eof']
    except KeyError as e:
        raise ValueError('bulk message without header %s' % e)
    if not (isinstance(sha256, str) and len(sha256) <= 128 and
            isinstance(eof, bool)):
        raise ValueError('bulk message with malformed headers %s' % (
            _echo(headers),))
    if body == '':
        # kombu hands an empty body over as text.
        body = b''
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError('bulk message body is %s, not bytes' % (
            type(body).__name__,))
    if len(body) > MAX_CHUNK:
        raise ValueError('bulk chunk %s@%d of %d bytes, more than the %d '
                         'allowed' % (name, offset, len(body), MAX_CHUNK))
    if compression == cl_fields.Compression.ZLIB:
        raw = _inflate(body, length, name, offset)
    elif compression == cl_fields.Compression.NONE:
        raw = bytes(body)
    else:
        raise ValueError('bulk chunk with unknown compression %s' % (
            exception.bounded(repr(compression), 40),))
    if len(raw) != length:
        raise ValueError('bulk chunk %s@%d holds %d bytes, not %d' % (
            name, offset, len(raw), length))
    return name, offset, raw, sha256, eof


def _inflate(body, length, name, offset):
    """``body`` decompressed, never to more than ``length`` + 1 bytes.

    Why: the sender chooses what a compressed body inflates to; the length
    it declared (bounded by MAX_CHUNK) is all we are ready to hold.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, length + 1)
    except zlib.error as e:
        raise ValueError('bulk chunk does not decompress: %s' % e)
    if len(raw) > length:
        raise ValueError('bulk chunk %s@%d inflates past its declared %d '
                         'bytes' % (name, offset, length))
    if not inflater.eof or inflater.unused_data:
        raise ValueError('bulk chunk %s@%d is not one whole zlib stream' % (
            name, offset))
    return raw
