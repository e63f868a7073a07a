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

"""Malformed object primitives become InvalidInput, never raw errors.

Primitives come from the bus: anyone holding its credentials can send any
JSON. Each case here once escaped as KeyError, TypeError, ValueError,
NotImplementedError or an oslo.versionedobjects error, or built a class of
another project.
"""

import copy

from oslo_serialization import jsonutils
from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import exception as ovo_exception
from oslo_versionedobjects import fields
from oslotest import base as test_base

from nova_consolelog import exception
from nova_consolelog import objects
from nova_consolelog.objects import base
from nova_consolelog.objects import console_log

objects.register_all()

UUID = '3f0e8fb1-1a2b-4c3d-8e9f-0a1b2c3d4e5f'
NS = 'nova_consolelog_object.'


def _set_primitive():
    f = console_log.ConsoleLogFile(name='console.log', kind='log',
                                   position=0, size=3, mtime=1.0,
                                   tail=b'abc')
    s = console_log.ConsoleLogSet(instance_uuid=UUID, host='h', files=[f])
    return jsonutils.loads(jsonutils.dumps(s.obj_to_primitive()))


def _chunk_primitive():
    c = console_log.ConsoleLogChunk.from_bytes(
        b'hello', instance_uuid=UUID, name='console.log', offset=0, eof=True)
    return jsonutils.loads(jsonutils.dumps(c.obj_to_primitive()))


def _edit(make, change):
    p = make()
    change(p)
    return p


def _nested_file(change):
    def edit(p):
        change(p[NS + 'data']['files'][0])
    return _edit(_set_primitive, edit)


def _pop(key):
    return lambda p: p.pop(key)


def _put(key, value):
    return lambda p: p.__setitem__(key, value)


def _put_data(key, value):
    return lambda p: p[NS + 'data'].__setitem__(key, value)


class _ForeignRegistry(ovo_base.VersionedObjectRegistry):
    """Another project's registry, sharing oslo's class table."""


class _ForeignObject(ovo_base.VersionedObject):
    OBJ_PROJECT_NAMESPACE = 'other_project'
    VERSION = '1.0'
    fields = {'x': fields.IntegerField()}


class _ConsoleLogFile(ovo_base.VersionedObject):
    """Another project's class that happens to share our object's name."""

    OBJ_PROJECT_NAMESPACE = 'other_project'
    VERSION = '1.5'
    fields = {'name': fields.StringField()}

    @classmethod
    def obj_name(cls):
        return 'ConsoleLogFile'


MALFORMED = {
    'not a dict': lambda: ['ConsoleLogSet', '1.0'],
    'a string': lambda: 'ConsoleLogSet',
    'missing name': lambda: _edit(_set_primitive, _pop(NS + 'name')),
    'missing version': lambda: _edit(_set_primitive, _pop(NS + 'version')),
    'missing namespace': lambda: _edit(_set_primitive,
                                       _pop(NS + 'namespace')),
    'missing data': lambda: _edit(_set_primitive, _pop(NS + 'data')),
    'data is a list': lambda: _edit(_set_primitive,
                                    _put(NS + 'data', [1, 2])),
    'data is a string': lambda: _edit(_set_primitive,
                                      _put(NS + 'data', 'files')),
    'name is a list': lambda: _edit(_set_primitive, _put(NS + 'name', [])),
    'version is a number': lambda: _edit(_set_primitive,
                                         _put(NS + 'version', 1.0)),
    'version 9.9': lambda: _edit(_set_primitive, _put(NS + 'version',
                                                      '9.9')),
    'version 1.9': lambda: _edit(_chunk_primitive, _put(NS + 'version',
                                                        '1.9')),
    'version not a version': lambda: _edit(_set_primitive,
                                           _put(NS + 'version', 'one')),
    'version empty': lambda: _edit(_set_primitive, _put(NS + 'version', '')),
    'unknown class': lambda: _edit(_set_primitive,
                                   _put(NS + 'name', 'NoSuchObject')),
    'other namespace': lambda: _edit(_set_primitive,
                                     _put(NS + 'namespace', 'nova')),
    'class of another registry': lambda: _edit(
        _set_primitive, _put(NS + 'name', '_ForeignObject')),
    'data not base64': lambda: _edit(_chunk_primitive,
                                     _put_data('data', '***not base64')),
    'data a number': lambda: _edit(_chunk_primitive, _put_data('data', 5)),
    'offset a string': lambda: _edit(_chunk_primitive,
                                     _put_data('offset', 'ten')),
    'offset negative': lambda: _edit(_chunk_primitive,
                                     _put_data('offset', -1)),
    'bad compression': lambda: _edit(_chunk_primitive,
                                     _put_data('compression', 'lz4')),
    'bad uuid': lambda: _edit(_chunk_primitive,
                              _put_data('instance_uuid', 'x' * 100000)),
    'missing field': lambda: _edit(_chunk_primitive, lambda p: p[
        NS + 'data'].pop('sha256')),
    'empty data': lambda: _edit(_set_primitive, _put(NS + 'data', {})),
    'files a dict': lambda: _edit(_set_primitive,
                                  _put_data('files', {'x': 1})),
    'files of strings': lambda: _edit(_set_primitive,
                                      _put_data('files', ['a'])),
    'changes not a list': lambda: _edit(_set_primitive,
                                        _put(NS + 'changes', 5)),
    'nested file missing name': lambda: _nested_file(
        lambda f: f[NS + 'data'].pop('name')),
    'nested file bad kind': lambda: _nested_file(
        lambda f: f[NS + 'data'].__setitem__('kind', 'other')),
    'nested file version 9.9': lambda: _nested_file(
        lambda f: f.__setitem__(NS + 'version', '9.9')),
    'nested file tail not base64': lambda: _nested_file(
        lambda f: f[NS + 'data'].__setitem__('tail', '!')),
    'nested file is a set': lambda: _edit(
        _set_primitive, _put_data('files', [_set_primitive()])),
    'nested file of another namespace': lambda: _nested_file(
        lambda f: f.__setitem__(NS + 'namespace', 'os_vif')),
}


class MalformedPrimitiveTest(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        registry = _ForeignRegistry()
        table = registry.obj_classes()
        before = {k: list(v) for k, v in table.items()}
        registry.register(_ForeignObject)
        registry.register(_ConsoleLogFile)

        def restore():
            for name in list(table):
                if name not in before:
                    del table[name]
                else:
                    table[name][:] = before[name]
        self.addCleanup(restore)
        self.serializer = base.ConsoleLogObjectSerializer()

    def test_well_formed_still_work(self):
        got = self.serializer.deserialize_entity({}, _set_primitive())
        self.assertEqual(b'abc', got.files[0].tail)
        chunk = console_log.ConsoleLogChunk.obj_from_primitive(
            _chunk_primitive())
        self.assertEqual(b'hello', chunk.raw_data())

    def test_obj_from_primitive(self):
        for case, make in MALFORMED.items():
            primitive = make()
            for cls in (base.ConsoleLogObject, console_log.ConsoleLogSet,
                        console_log.ConsoleLogChunk):
                try:
                    cls.obj_from_primitive(copy.deepcopy(primitive))
                except exception.InvalidInput as e:
                    self.assertLess(len(str(e)), 400, case)
                    self.assertIsNone(e.__cause__, case)
                    self.assertTrue(e.__suppress_context__ or
                                    e.__context__ is None, case)
                except Exception as e:
                    self.fail('%s: %s raised %r' % (case, cls.__name__, e))
                else:
                    self.fail('%s: %s accepted it' % (case, cls.__name__))

    def test_serializer(self):
        for case, make in MALFORMED.items():
            if case in ('not a dict', 'a string', 'missing name'):
                # Not an object primitive (no name): oslo passes it
                # through as plain data.
                continue
            try:
                self.serializer.deserialize_entity({}, make())
            except exception.InvalidInput:
                pass
            except Exception as e:
                self.fail('%s raised %r' % (case, e))
            else:
                self.fail('%s accepted' % case)

    def test_serializer_inside_containers(self):
        bad = MALFORMED['version 9.9']()
        for entity in ([bad], {'a': bad}, {'a': [1, {'b': bad}]}):
            self.assertRaises(exception.InvalidInput,
                              self.serializer.deserialize_entity, {},
                              entity)

    def test_newer_version_typed_both_ways(self):
        e = self.assertRaises(
            exception.InvalidInput, self.serializer.deserialize_entity, {},
            MALFORMED['version 1.9']())
        self.assertIsInstance(e, ovo_exception.IncompatibleObjectVersion)

    def test_never_another_projects_class(self):
        # Same name as ours, higher version, other namespace: not handed out.
        p = _set_primitive()
        f = p[NS + 'data']['files'][0]
        f[NS + 'version'] = '1.5'
        self.assertRaises(exception.InvalidInput,
                          self.serializer.deserialize_entity, {}, p)
        # Ours is still found by name next to it.
        got = self.serializer.deserialize_entity({}, _set_primitive())
        self.assertIsInstance(got.files[0], console_log.ConsoleLogFile)

    def test_class_lookup_only_ours(self):
        self.assertRaises(exception.InvalidInput,
                          base.ConsoleLogObject.obj_class_from_name,
                          '_ForeignObject', '1.0')
        self.assertIs(console_log.ConsoleLogFile,
                      base.ConsoleLogObject.obj_class_from_name(
                          'ConsoleLogFile', '1.0'))
        self.assertIs(console_log.ConsoleLogChunk,
                      base.ConsoleLogObject.obj_class_from_name(
                          'ConsoleLogChunk', '1.0'))
        # x.y.z: the serializer retries as x.y, as oslo's does.
        self.assertRaises(ovo_exception.IncompatibleObjectVersion,
                          base.ConsoleLogObject.obj_class_from_name,
                          'ConsoleLogChunk', '1.1.2')
        p = _chunk_primitive()
        p[NS + 'version'] = '1.1.2'
        got = self.serializer.deserialize_entity({}, p)
        self.assertEqual(b'hello', got.raw_data())

    def test_deep_nesting(self):
        entity = []
        for _ in range(5000):
            entity = [entity]
        entity = [MALFORMED['version 9.9']()] + [entity]
        self.assertRaises(exception.InvalidInput,
                          self.serializer.deserialize_entity, {}, entity)
