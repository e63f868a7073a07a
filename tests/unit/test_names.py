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

import uuid

from oslotest import base

from nova_consolelog import exception
from nova_consolelog import names

UUID = '3f0e8fb1-1a2b-4c3d-8e9f-0a1b2c3d4e5f'


class HostNameTest(base.BaseTestCase):

    def test_accepted(self):
        for name in ('compute-1', 'a', 'node_2.example.org', 'A1',
                     'x' * 254):
            self.assertEqual(name, names.check_host_name(name))

    def test_refused(self):
        for name in ('*', '#', 'compute.*', 'compute.#', 'a b', 'a\tb',
                     'host\n', '\nhost', 'a\x00b', 'a..b', '..', '.a',
                     '-a', '', 'x' * 255, 'hôst', 'a/b', 'a:b', None, 5,
                     b'host', ['h']):
            self.assertRaises(exception.InvalidInput,
                              names.check_host_name, name)

    def test_echo_bounded(self):
        e = self.assertRaises(exception.InvalidInput,
                              names.check_host_name, '*' * 100000)
        self.assertLess(len(str(e)), 200)


class InstanceUuidTest(base.BaseTestCase):

    def test_canonical(self):
        self.assertEqual(UUID, names.check_instance_uuid(UUID))
        self.assertEqual(UUID, names.check_instance_uuid(UUID.upper()))
        self.assertEqual(UUID, names.check_instance_uuid(
            UUID.replace('-', '')))
        self.assertEqual(UUID, names.check_instance_uuid('{%s}' % UUID))

    def test_refused(self):
        for value in ('', 'x', UUID + '\n', UUID + 'a', ' ' + UUID,
                      UUID[:-1], UUID.replace('-', '_'), '../' + UUID,
                      '1_' + UUID[2:], None, 1, uuid.UUID(UUID),
                      UUID.encode()):
            self.assertRaises(exception.InvalidInput,
                              names.check_instance_uuid, value)

    def test_echo_bounded(self):
        e = self.assertRaises(exception.InvalidInput,
                              names.check_instance_uuid, 'a' * (20 << 20))
        self.assertLess(len(str(e)), 200)


class StashIdTest(base.BaseTestCase):

    def test_accepted(self):
        for value in ('20240101T000000Z-abcdef01', 'a', 'A_b-9', 'x' * 64):
            self.assertEqual(value, names.check_stash_id(value))

    def test_refused(self):
        for value in ('', 'x' * 65, 'abc\n', 'a/b', '..', '.', 'a b',
                      'a.b', None, 7, b'abc'):
            self.assertRaises(exception.InvalidInput,
                              names.check_stash_id, value)


class TokenTest(base.BaseTestCase):

    def test_accepted(self):
        token = uuid.uuid4().hex
        self.assertTrue(names.is_token(token))
        self.assertEqual(token, names.check_token(token))

    def test_refused(self):
        for value in (None, 7, b'0' * 32, '0' * 31, '0' * 33, 'A' * 32,
                      '0' * 32 + '\n', 'g' * 32):
            self.assertFalse(names.is_token(value), value)
            self.assertRaises(exception.InvalidInput, names.check_token,
                              value)


class ImportIdTest(base.BaseTestCase):

    def test_accepted(self):
        self.assertEqual('pull-0a_Z', names.check_import_id('pull-0a_Z'))

    def test_refused(self):
        for value in (None, '', '../x', 'a' * 65, 'a\n', 'a b'):
            self.assertRaises(exception.InvalidInput, names.check_import_id,
                              value)


class NumberTest(base.BaseTestCase):

    def test_count(self):
        self.assertEqual(0, names.check_count('n', 0))
        self.assertEqual(2 ** 70, names.check_count('n', 2 ** 70))
        for bad in (-1, True, False, 1.0, '1', None, [1]):
            self.assertRaises(exception.InvalidInput, names.check_count,
                              'n', bad)

    def test_int_in_range(self):
        self.assertEqual(5, names.check_int('n', 5, 0, 5))
        for bad in (-1, 6, True, 5.0, '5', None):
            self.assertRaises(exception.InvalidInput, names.check_int,
                              'n', bad, 0, 5)

    def test_bool(self):
        self.assertIs(True, names.check_bool('b', True))
        self.assertIs(False, names.check_bool('b', False))
        for bad in (0, 1, 'true', None):
            self.assertRaises(exception.InvalidInput, names.check_bool,
                              'b', bad)

    def test_refusal_bounded(self):
        e = self.assertRaises(exception.InvalidInput, names.check_count,
                              'n', ['x' * 10 ** 6])
        self.assertLess(len(str(e)), 200)
