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

"""Errors echo a bounded part of their input, also across oslo.messaging."""

import sys

import oslo_messaging
from oslo_messaging._drivers import common as om_common
from oslo_versionedobjects import exception as ovo_exception
from oslotest import base

from nova_consolelog import exception
from nova_consolelog.rpc import transport

MiB = 1024 * 1024
# The message limit plus its '...(N more)' marker.
MESSAGE_CAP = exception.MAX_MESSAGE + 32
VALUE_CAP = exception.MAX_VALUE + 32


class BoundedTest(base.BaseTestCase):

    def test_short_values_kept(self):
        for value in ('abc', b'abc', 0, -5, 1.5, True, None, ['a'],
                      2 ** 200):
            self.assertEqual(value, exception.bounded(value))

    def test_str_cut_with_marker(self):
        got = exception.bounded('x' * 1000)
        self.assertEqual('x' * exception.MAX_VALUE + '...(%d more)' % (
            1000 - exception.MAX_VALUE), got)

    def test_bytes_cut_with_marker(self):
        got = exception.bounded(b'\xff' * 1000)
        self.assertIsInstance(got, bytes)
        self.assertTrue(got.endswith(b'...(%d more)' % (
            1000 - exception.MAX_VALUE)))
        self.assertLessEqual(len(got), VALUE_CAP)

    def test_huge_integer(self):
        got = exception.bounded(10 ** 5000)
        self.assertIsInstance(got, str)
        self.assertLessEqual(len(got), VALUE_CAP)

    def test_long_container_replaced_by_cut_repr(self):
        got = exception.bounded(['y' * 100] * 100)
        self.assertIsInstance(got, str)
        self.assertLessEqual(len(got), VALUE_CAP)

    def test_unprintable(self):
        class Bad:
            def __repr__(self):
                raise RuntimeError('no')
        self.assertEqual('<unprintable Bad>', exception.bounded(Bad()))


class ErrorEchoTest(base.BaseTestCase):

    def test_20_mib_instance_id(self):
        huge = 'a' * (20 * MiB)
        e = exception.InvalidInput(reason='malformed instance uuid %r' % (
            huge,))
        self.assertLessEqual(len(str(e)), MESSAGE_CAP)
        self.assertLessEqual(len(e.message), MESSAGE_CAP)
        self.assertLessEqual(len(e.kwargs['reason']), VALUE_CAP)
        self.assertIn('more)', str(e))

    def test_every_kwarg_bounded(self):
        e = exception.TransferFailed(instance='i' * MiB, host=b'h' * MiB,
                                     reason='r' * MiB)
        for value in e.kwargs.values():
            self.assertLessEqual(len(value), VALUE_CAP)
        self.assertLessEqual(len(str(e)), MESSAGE_CAP)
        self.assertTrue(str(e).startswith('Console log of instance iii'))

    def test_explicit_message_bounded(self):
        e = exception.StashFailed('m' * MiB, instance='x', reason='y')
        self.assertLessEqual(len(str(e)), MESSAGE_CAP)
        self.assertEqual(('m' * exception.MAX_MESSAGE + '...(%d more)' % (
            MiB - exception.MAX_MESSAGE),), e.args)

    def test_non_str_message(self):
        e = exception.InvalidInput(b'z' * MiB)
        self.assertIsInstance(e.message, str)
        self.assertLessEqual(len(str(e)), MESSAGE_CAP)

    def test_wrong_keyword_still_bounded(self):
        e = exception.ChecksumMismatch(name='n' * MiB)
        self.assertIn('Checksum mismatch', str(e))
        self.assertLessEqual(len(str(e)), MESSAGE_CAP)

    def test_huge_integer_does_not_break_the_message(self):
        e = exception.ChecksumMismatch(name='n', offset=10 ** 10000,
                                       expected='e', actual='a')
        self.assertIn('integer of', str(e))

    def test_short_message_unchanged(self):
        e = exception.StashNotFound(stash_id='s1', instance='i1')
        self.assertEqual('No console-log stash s1 for instance i1.', str(e))
        self.assertEqual({'stash_id': 's1', 'instance': 'i1'}, e.kwargs)

    def test_object_version_unsupported_is_both(self):
        e = exception.ObjectVersionUnsupported(reason='v')
        self.assertIsInstance(e, exception.InvalidInput)
        self.assertIsInstance(e, ovo_exception.IncompatibleObjectVersion)
        self.assertEqual('Invalid input: v', str(e))


class RemoteRebuildTest(base.BaseTestCase):
    """What a caller gets: oslo.messaging's own (de)serialisation."""

    def _wire(self, error):
        try:
            raise error
        except Exception:
            data = om_common.serialize_remote_exception(sys.exc_info())
        return data, om_common.deserialize_remote_exception(
            data, transport.ALLOWED_REMOTE_EXMODS)

    def test_reply_of_a_huge_echo_is_small(self):
        data, got = self._wire(exception.InvalidInput(
            reason='malformed instance uuid %r' % ('u' * (20 * MiB),)))
        # The whole serialised failure: message, args, kwargs, traceback.
        self.assertLess(len(data), 8192)
        self.assertIsInstance(got, exception.InvalidInput)
        self.assertLessEqual(len(got.kwargs['reason']), VALUE_CAP)

    def test_rebuilt_with_same_class_and_kwargs(self):
        _data, got = self._wire(exception.StashNotFound(stash_id='s',
                                                        instance='i'))
        self.assertIsInstance(got, exception.StashNotFound)
        self.assertEqual({'stash_id': 's', 'instance': 'i'}, got.kwargs)
        self.assertNotIsInstance(got, oslo_messaging.RemoteError)

    def test_hostile_reply_bounded_on_the_caller(self):
        # A reply built by a peer that does not bound its errors.
        data = ('{"class": "InvalidInput", "module": '
                '"nova_consolelog.exception", "message": "m", "tb": [], '
                '"args": ["%s"], "kwargs": {"reason": "%s"}}' % (
                    'a' * MiB, 'b' * MiB))
        got = om_common.deserialize_remote_exception(
            data, transport.ALLOWED_REMOTE_EXMODS)
        self.assertIsInstance(got, exception.InvalidInput)
        self.assertLessEqual(len(got.message), MESSAGE_CAP)
        self.assertLessEqual(len(got.kwargs['reason']), VALUE_CAP)

    def test_object_version_unsupported_rebuilt(self):
        _data, got = self._wire(exception.ObjectVersionUnsupported(
            reason='ConsoleLogChunk 9.9'))
        self.assertIsInstance(got, exception.ObjectVersionUnsupported)
