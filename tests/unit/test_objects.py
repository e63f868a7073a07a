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

import base64
import hashlib
import os
import zlib

from oslo_serialization import jsonutils
from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import exception as ovo_exc
from oslo_versionedobjects import fixture
from oslotest import base as test_base

from nova_consolelog import objects
from nova_consolelog.objects import base
from nova_consolelog.objects import console_log
from nova_consolelog.objects import fields as cl_fields

objects.register_all()

UUID = '3f0e8fb1-1a2b-4c3d-8e9f-0a1b2c3d4e5f'

# A change of an object's fields or remotable methods changes its hash: bump
# the object's VERSION (and handle the old one in obj_make_compatible), then
# update the hash here.
object_data = {
    'ConsoleLogChunk': '1.1-5e2927ceb8801089d333137b46a59cf4',
    'ConsoleLogFile': '1.1-0abe72e95e2ff7e364664eaef6ecf166',
    'ConsoleLogSet': '1.1-96abd6e8e3ef2e7ff9d8aabecf625d2f',
}


def _wire(obj, target_version=None):
    """What oslo.messaging does to a reply: serializer, JSON, back."""
    serializer = base.ConsoleLogObjectSerializer()
    if target_version is None:
        primitive = serializer.serialize_entity({}, obj)
    else:
        primitive = obj.obj_to_primitive(target_version=target_version)
    return serializer.deserialize_entity(
        {}, jsonutils.loads(jsonutils.dumps(primitive)))


def _chunk(raw, compress=False, **kwargs):
    args = dict(instance_uuid=UUID, name='console.log', offset=0, eof=True)
    args.update(kwargs)
    return console_log.ConsoleLogChunk.from_bytes(raw, compress=compress,
                                                  **args)


class TestObjectVersions(test_base.BaseTestCase):

    def test_versions(self):
        checker = fixture.ObjectVersionChecker(
            base.ConsoleLogObjectRegistry.console_log_classes())
        expected, actual = checker.test_hashes(object_data)
        self.assertEqual(expected, actual,
                         'Some objects changed; bump their version and '
                         'update object_data')

    def test_registry_filtered_by_namespace(self):
        # The class table is shared with every other registry: another
        # project's object of the same name must not be listed as ours.
        table = ovo_base.VersionedObjectRegistry.obj_classes()

        class ConsoleLogChunk(ovo_base.VersionedObject):
            OBJ_PROJECT_NAMESPACE = 'someone_else'
            VERSION = '9.0'
            fields = {}

        before = list(table['ConsoleLogChunk'])
        ovo_base.VersionedObjectRegistry.register(ConsoleLogChunk)
        self.addCleanup(table['ConsoleLogChunk'].__setitem__,
                        slice(None), before)
        self.assertIn(ConsoleLogChunk, table['ConsoleLogChunk'])
        ours = base.ConsoleLogObjectRegistry.console_log_classes()
        self.assertEqual(before, ours['ConsoleLogChunk'])
        self.assertNotIn(ConsoleLogChunk, ours['ConsoleLogChunk'])
        self.assertIs(console_log.ConsoleLogChunk,
                      base.ConsoleLogObject.obj_class_from_name(
                          'ConsoleLogChunk', '1.1'))

    def test_own_namespace(self):
        primitive = _chunk(b'x').obj_to_primitive()
        self.assertEqual('ConsoleLogChunk',
                         primitive['nova_consolelog_object.name'])
        self.assertEqual('nova_consolelog',
                         primitive['nova_consolelog_object.namespace'])


class TestBytesField(test_base.BaseTestCase):

    def _round_trip(self, raw):
        got = _wire(_chunk(raw))
        self.assertIsInstance(got.data, bytes)
        self.assertEqual(raw, got.data)
        self.assertEqual(raw, got.raw_data())

    def test_every_byte_value(self):
        self._round_trip(bytes(range(256)) * 3)

    def test_invalid_utf8(self):
        self._round_trip(b'\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c')

    def test_empty(self):
        self._round_trip(b'')

    def test_one_mib_random(self):
        self._round_trip(os.urandom(1024 * 1024))

    def test_primitive_is_base64_text(self):
        primitive = _chunk(b'\x00\xff').obj_to_primitive()
        data = primitive['nova_consolelog_object.data']['data']
        self.assertEqual(base64.b64encode(b'\x00\xff').decode(), data)

    def _from_primitive(self, value):
        primitive = _chunk(b'abc').obj_to_primitive()
        primitive['nova_consolelog_object.data']['data'] = value
        return console_log.ConsoleLogChunk.obj_from_primitive(primitive)

    def test_not_a_string(self):
        for value in (123, None, [1], {'a': 1}, b'YWJj'):
            self.assertRaises(ValueError, self._from_primitive, value)

    def test_invalid_base64(self):
        for value in ('abc', '!!!!', 'YWJj\n===', 'Y W J j', 'é'):
            self.assertRaises(ValueError, self._from_primitive, value)

    def test_coerce_rejects_str(self):
        self.assertRaises(ValueError, console_log.ConsoleLogChunk,
                          data='text')

    def test_coerce_accepts_bytes_like(self):
        chunk = console_log.ConsoleLogChunk(data=bytearray(b'ab'))
        self.assertEqual(b'ab', chunk.data)
        chunk.data = memoryview(b'cd')
        self.assertEqual(b'cd', chunk.data)


class TestChunkCompression(test_base.BaseTestCase):

    TEXT = b''.join(b'[%8d] guest says hello on ttyS0\r\n' % i
                    for i in range(20000))

    def test_compresses_text(self):
        chunk = _chunk(self.TEXT, compress=True)
        self.assertEqual(cl_fields.Compression.ZLIB, chunk.compression)
        self.assertLess(len(chunk.data), len(self.TEXT) // 4)
        self.assertEqual(self.TEXT, _wire(chunk).raw_data())
        self.assertEqual(hashlib.sha256(self.TEXT).hexdigest(), chunk.sha256)

    def test_random_stays_raw(self):
        raw = os.urandom(64 * 1024)
        chunk = _chunk(raw, compress=True)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(raw, chunk.data)

    def test_random_mib_skips_compression(self):
        raw = os.urandom(1024 * 1024)
        chunk = _chunk(raw, compress=True)
        self.assertEqual(cl_fields.Compression.NONE, chunk.compression)
        self.assertEqual(raw, _wire(chunk).raw_data())

    def test_make_compatible_1_0_decompresses(self):
        chunk = _chunk(self.TEXT, compress=True)
        self.assertEqual(cl_fields.Compression.ZLIB, chunk.compression)
        old = _wire(chunk, target_version='1.0')
        self.assertEqual(self.TEXT, old.data)
        self.assertEqual(self.TEXT, old.raw_data())
        self.assertEqual(cl_fields.Compression.NONE, old.compression)
        primitive = chunk.obj_to_primitive(target_version='1.0')
        self.assertEqual('1.0', primitive['nova_consolelog_object.version'])
        self.assertNotIn('compression',
                         primitive['nova_consolelog_object.data'])

    def test_make_compatible_1_0_uncompressed(self):
        raw = os.urandom(1000)
        old = _wire(_chunk(raw), target_version='1.0')
        self.assertEqual(raw, old.raw_data())

    def test_corrupt_compressed_data(self):
        chunk = _chunk(self.TEXT, compress=True)
        chunk.data = b'not zlib'
        self.assertRaises(ValueError, chunk.raw_data)

    def test_unknown_compression_rejected(self):
        self.assertRaises(ValueError, setattr, _chunk(b'x'), 'compression',
                          'lz4')

    def test_newer_version_is_refused(self):
        primitive = _chunk(b'x').obj_to_primitive()
        primitive['nova_consolelog_object.version'] = '1.9'
        self.assertRaises(ovo_exc.IncompatibleObjectVersion,
                          console_log.ConsoleLogChunk.obj_from_primitive,
                          primitive)

    def test_zlib_level_1(self):
        chunk = _chunk(self.TEXT, compress=True)
        self.assertEqual(zlib.compress(self.TEXT, 1), chunk.data)


def _set(*tails, **kwargs):
    files = [console_log.ConsoleLogFile(
        name='f%d' % i, kind=cl_fields.FileKind.BACKUP, position=i,
        size=len(t) if t is not None else 0, mtime=0.0, tail=t)
        for i, t in enumerate(tails)]
    return console_log.ConsoleLogSet(instance_uuid=UUID, host='h',
                                     files=files, **kwargs)


class TestConsoleLogSet(test_base.BaseTestCase):

    def test_merged_tail_across_files(self):
        s = _set(b'aaaa', b'bbbb', b'cc')
        self.assertEqual(b'abbbbcc', s.merged_tail(7))
        self.assertEqual(b'aaaabbbbcc', s.merged_tail(100))
        self.assertEqual(b'cc', s.merged_tail(2))
        self.assertEqual(b'c', s.merged_tail(1))

    def test_merged_tail_zero_and_empty(self):
        self.assertEqual(b'', _set(b'abc').merged_tail(0))
        self.assertEqual(b'', _set().merged_tail(10))
        self.assertEqual(b'ab', _set(None, b'', b'ab').merged_tail(10))

    def test_merged_tail_negative(self):
        self.assertRaises(ValueError, _set(b'a').merged_tail, -1)

    def test_merged_tail_survives_the_wire(self):
        s = _set(bytes(range(256)), b'\xff\n\x00')
        got = _wire(s)
        self.assertEqual(s.merged_tail(100), got.merged_tail(100))
        self.assertEqual(259, got.total_size)

    def test_defaults(self):
        s = console_log.ConsoleLogSet(instance_uuid=UUID, host='h')
        self.assertEqual(0, s.base_offset)
        self.assertIsNone(s.stash_id)
        self.assertEqual([], s.files)

    def test_bad_values(self):
        self.assertRaises(ValueError, setattr, _set(), 'base_offset', -1)
        f = console_log.ConsoleLogFile()
        self.assertRaises(ValueError, setattr, f, 'kind', 'other')
        self.assertRaises(ValueError, setattr, f, 'size', -5)
