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

"""Bounds of the bulk channel on the real RabbitMQ.

A source publishes nothing to a queue that does not exist: the first
message of a window goes out mandatory and confirmed, and the window stops
there when the broker returns it. The puller's queue is exclusive to the
puller's connection; publishing to it from the source's must still work.
"""

import hashlib
import os
import time

from nova_consolelog import exception
from nova_consolelog.rpc import broker
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import bulk_receiver
from nova_consolelog.rpc import frames

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import pulls

MiB = 1024 * 1024


class CountingChunks:
    """``(headers, body)`` pairs of a window, counting those taken."""

    def __init__(self, total, size=MiB):
        self.total = total
        self.size = size
        self.taken = 0

    def __iter__(self):
        offset = 0
        while offset < self.total:
            raw = os.urandom(min(self.size, self.total - offset))
            self.taken += 1
            yield (frames.chunk_headers(
                'console.log.0', offset, len(raw),
                hashlib.sha256(raw).hexdigest(), 'none', False), raw)
            offset += len(raw)


class PublisherBoundsTest(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        conf = test_fixtures.make_conf(self.root, 'probe', self.topic)
        self.url = broker.kombu_url(conf, base.TRANSPORT_URL)
        self.publisher = cl_bulk.Publisher(self.url)
        self.addCleanup(self.publisher.close)

    def receive_all(self, receiver, count, timeout=20):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            got.extend(receiver.receive(1))
        return got

    def test_16_mib_to_a_missing_queue_sends_one_message(self):
        chunks = CountingChunks(16 * MiB)
        queue = cl_bulk.new_queue_name()  # well formed, never declared
        e = self.assertRaises(exception.InvalidInput, self.publisher.publish,
                              queue, iter(chunks))
        self.assertIn('does not exist', str(e))
        self.assertIn(queue, str(e))
        self.assertEqual(1, chunks.taken)
        # The connection is still good for the next window.
        with bulk_receiver.Receiver(self.url, 16) as receiver:
            chunks = CountingChunks(3 * MiB)
            self.publisher.publish(receiver.queue_name, iter(chunks))
            self.assertEqual(3, len(self.receive_all(receiver, 3)))

    def test_exclusive_queue_of_another_connection(self):
        with bulk_receiver.Receiver(self.url, 16) as receiver:
            chunks = CountingChunks(5 * MiB + 3)
            self.publisher.publish(receiver.queue_name, iter(chunks))
            got = self.receive_all(receiver, 6)
        self.assertEqual(6, chunks.taken)
        offsets = [frames.decode_chunk(h, b)[1] for h, b in got]
        # In order, the confirmed first message included.
        self.assertEqual([i * MiB for i in range(6)], offsets)
        for headers, body in got:
            _n, _o, raw, sha256, _e = frames.decode_chunk(headers, body)
            self.assertEqual(hashlib.sha256(raw).hexdigest(), sha256)

    def test_queue_gone_between_windows(self):
        receiver = bulk_receiver.Receiver(self.url, 16)
        with receiver:
            self.publisher.publish(receiver.queue_name,
                                   iter(CountingChunks(2 * MiB)))
            self.assertEqual(2, len(self.receive_all(receiver, 2)))
        chunks = CountingChunks(8 * MiB)
        self.assertRaises(exception.InvalidInput, self.publisher.publish,
                          receiver.queue_name, iter(chunks))
        self.assertEqual(1, chunks.taken)

    def test_many_windows_stay_quick(self):
        # One extra round trip per window: 50 small windows in well under
        # the time a slow path would take.
        with bulk_receiver.Receiver(self.url, 64) as receiver:
            started = time.monotonic()
            for _ in range(50):
                self.publisher.publish(receiver.queue_name,
                                       iter(CountingChunks(8192, 4096)))
            elapsed = time.monotonic() - started
            self.assertEqual(100, len(self.receive_all(receiver, 100)))
        self.assertLess(elapsed, 10)


class SourceBoundsTest(pulls.PullTestCase):
    """A real ``serve`` source asked to publish to a missing queue."""

    def test_send_range_to_a_missing_queue(self):
        files = {'console.log.0': pulls.random_bytes(16 * MiB, 7)}
        instance, _stash = self.make_source(files, stash=False)
        _conf, api = self.client()
        queue = cl_bulk.new_queue_name()
        e = self.assertRaises(exception.InvalidInput, api.send_range, {},
                              'src', instance, 'console.log.0', 0, 16 * MiB,
                              queue, timeout=60)
        self.assertIn('does not exist', str(e))
        # The endpoint still serves a good window afterwards.
        url = broker.kombu_url(_conf, base.TRANSPORT_URL)
        with bulk_receiver.Receiver(url, 16) as receiver:
            summary = api.send_range({}, 'src', instance, 'console.log.0',
                                     0, MiB, receiver.queue_name,
                                     timeout=60)
            self.assertEqual(MiB, summary['bytes'])
