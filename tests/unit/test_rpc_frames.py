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

"""Bounds of rpc.frames (sizes, names, bindings) and rpc.bulk queue names."""

import hashlib
import resource
import uuid
import zlib

from oslotest import base as test_base

from nova_consolelog import exception
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import frames

MiB = 1024 * 1024
TOKEN = uuid.uuid4().hex
UUID = '3f0e8fb1-1a2b-4c3d-8e9f-0a1b2c3d4e5f'


def _headers(raw, compression='none', **overrides):
    headers = frames.chunk_headers('console.log.0', 4096, len(raw),
                                   hashlib.sha256(raw).hexdigest(),
                                   compression, False)
    headers.update(overrides)
    return headers


def _max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class DecompressionBoundTest(test_base.BaseTestCase):

    def test_bomb_refused_without_inflating_it(self):
        # ~250 KiB of zlib that inflates to 250 MiB, declared as 1 KiB.
        bomb = zlib.compressobj(9)
        body = b''.join([bomb.compress(b'\0' * MiB) for _ in range(250)] +
                        [bomb.flush()])
        self.assertLess(len(body), MiB)
        before = _max_rss_mib()
        e = self.assertRaises(ValueError, frames.decode_chunk,
                              _headers(b'x' * 1024, 'zlib'), body)
        self.assertIn('inflates past', str(e))
        # Peak memory of the process did not grow by the bomb's size.
        self.assertLess(_max_rss_mib() - before, 32)

    def test_bomb_declaring_the_cap(self):
        bomb = zlib.compressobj(9)
        body = b''.join([bomb.compress(b'\0' * MiB) for _ in range(64)] +
                        [bomb.flush()])
        headers = _headers(b'', 'zlib', length=frames.MAX_CHUNK)
        self.assertRaises(ValueError, frames.decode_chunk, headers, body)

    def test_exact_length_accepted(self):
        raw = b'login: ' * 1000
        got = frames.decode_chunk(_headers(raw, 'zlib'),
                                  zlib.compress(raw, 1))
        self.assertEqual(raw, got[2])

    def test_empty_chunk(self):
        got = frames.decode_chunk(_headers(b'', 'zlib'), zlib.compress(b''))
        self.assertEqual(b'', got[2])

    def test_truncated_stream(self):
        raw = bytes(range(256)) * 100
        body = zlib.compress(raw, 1)
        self.assertRaises(ValueError, frames.decode_chunk,
                          _headers(raw, 'zlib'), body[:-6])

    def test_short_output(self):
        raw = b'abc' * 100
        self.assertRaises(ValueError, frames.decode_chunk,
                          _headers(raw, 'zlib', length=len(raw) + 1),
                          zlib.compress(raw))

    def test_trailing_data_after_the_stream(self):
        raw = b'abc' * 100
        self.assertRaises(ValueError, frames.decode_chunk,
                          _headers(raw, 'zlib'),
                          zlib.compress(raw) + b'more')

    def test_declared_length_above_cap(self):
        raw = b'a'
        self.assertRaises(ValueError, frames.parse_headers,
                          _headers(raw, length=frames.MAX_CHUNK + 1))
        self.assertEqual(frames.MAX_CHUNK, frames.parse_headers(
            _headers(raw, length=frames.MAX_CHUNK))[2])

    def test_body_above_cap(self):
        body = b'\0' * (frames.MAX_CHUNK + 1)
        for compression in ('none', 'zlib'):
            e = self.assertRaises(
                ValueError, frames.decode_chunk,
                _headers(b'', compression, length=frames.MAX_CHUNK), body)
            self.assertIn('more than', str(e))

    def test_body_not_bytes(self):
        self.assertRaises(ValueError, frames.decode_chunk,
                          _headers(b'abc'), 'abc')


class HeaderBoundTest(test_base.BaseTestCase):

    def test_parse_headers_keeps_its_result(self):
        self.assertEqual(('console.log.0', 4096, 3),
                         frames.parse_headers(_headers(b'abc')))

    def test_malformed(self):
        raw = b'abc'
        for overrides in ({'name': 'n' * 65}, {'name': ''},
                          {'name': 'console.log\n'}, {'name': 'a\x00b'},
                          {'name': 'a\x7fb'}, {'name': b'console.log'},
                          {'offset': 2 ** 63}, {'offset': 10 ** 100},
                          {'offset': -1}, {'offset': True},
                          {'offset': 1.0}, {'length': -1},
                          {'length': False}, {'length': 2 ** 64}):
            self.assertRaises(ValueError, frames.parse_headers,
                              _headers(raw, **overrides))
        for headers in (None, [], 'name', {'name': 'a'}):
            self.assertRaises(ValueError, frames.parse_headers, headers)

    def test_limits_accepted(self):
        h = _headers(b'', name='n' * 64, offset=2 ** 63 - 1, length=0)
        self.assertEqual(('n' * 64, 2 ** 63 - 1, 0),
                         frames.parse_headers(h))

    def test_error_echo_bounded(self):
        e = self.assertRaises(ValueError, frames.parse_headers,
                              _headers(b'', name='x' * (20 * MiB)))
        self.assertLess(len(str(e)), 400)
        e = self.assertRaises(ValueError, frames.decode_chunk,
                              _headers(b'', sha256='s' * MiB), b'')
        self.assertLess(len(str(e)), 400)
        e = self.assertRaises(ValueError, frames.decode_chunk,
                              _headers(b'', 'z' * MiB), b'')
        self.assertLess(len(str(e)), 400)


class FrameBindingTest(test_base.BaseTestCase):

    def test_headers_without_token_unchanged(self):
        headers = frames.chunk_headers('n', 0, 1, 's', 'none', True)
        self.assertEqual({'name', 'offset', 'length', 'sha256',
                          'data_compression', 'eof'}, set(headers))
        self.assertEqual((None, None, None), frames.frame_binding(headers))

    def test_round_trip(self):
        headers = frames.chunk_headers('n', 0, 1, 's', 'none', True,
                                       token=TOKEN, instance_uuid=UUID,
                                       stash_id='stash-1')
        self.assertEqual((TOKEN, UUID, 'stash-1'),
                         frames.frame_binding(headers))
        self.assertEqual(('n', 0, 1), frames.parse_headers(headers))

    def test_live_chain_has_stash_id_none(self):
        headers = frames.chunk_headers('n', 0, 1, 's', 'none', True,
                                       token=TOKEN, instance_uuid=UUID)
        self.assertIn('stash_id', headers)
        self.assertIsNone(headers['stash_id'])
        self.assertEqual((TOKEN, UUID, None),
                         frames.frame_binding(headers))

    def test_malformed(self):
        good = frames.chunk_headers('n', 0, 1, 's', 'none', True,
                                    token=TOKEN, instance_uuid=UUID,
                                    stash_id='s1')
        for key, bad in (('token', None), ('token', TOKEN.upper()),
                         ('token', TOKEN + '\n'), ('token', TOKEN[:-1]),
                         ('token', 5), ('token', TOKEN.encode()),
                         ('token', [TOKEN]), ('instance_uuid', 5),
                         ('instance_uuid', b'x'), ('instance_uuid', ['x']),
                         ('instance_uuid', 'u' * 65), ('stash_id', 7),
                         ('stash_id', {'a': 1}), ('stash_id', 's' * MiB)):
            headers = dict(good, **{key: bad})
            e = self.assertRaises(ValueError, frames.frame_binding,
                                  headers)
            self.assertLess(len(str(e)), 300)
        for headers in (None, [], 'token'):
            self.assertRaises(ValueError, frames.frame_binding, headers)


class QueueNameTest(test_base.BaseTestCase):

    def test_trailing_newline_refused(self):
        name = cl_bulk.new_queue_name()
        for bad in (name + '\n', '\n' + name, name + '\x00', name[:-1],
                    name + ' ', cl_bulk.QUEUE_PREFIX + 'g' * 32,
                    cl_bulk.QUEUE_PREFIX + '*' * 32, '#', '*'):
            self.assertRaises(exception.InvalidInput,
                              cl_bulk.check_queue_name, bad)

    def test_echo_bounded(self):
        e = self.assertRaises(exception.InvalidInput,
                              cl_bulk.check_queue_name, 'q' * (20 * MiB))
        self.assertLess(len(str(e)), 300)
