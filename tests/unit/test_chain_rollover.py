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

"""Reads while a writer rotates the chain exactly as virtlogd does."""

import os
import threading
import time
from unittest import mock

from nova_consolelog import chain_snapshot

from tests import fixtures as test_fixtures

MAX_BACKUPS = 3
LINE = b'%09d\n'
LINES_PER_FILE = 40


class VirtlogdLike(threading.Thread):
    """Appends numbered lines; rolls over every LINES_PER_FILE lines.

    Rollover as in virtlogd's ``virRotatingFileWriterRollover``: unlink the
    oldest backup, rename ``.i`` to ``.i+1`` from the oldest down, rename
    the base to ``.0``, create a new base.
    """

    def __init__(self, directory, duration):
        super().__init__(daemon=True)
        self.base = os.path.join(directory, 'console.log')
        self.duration = duration
        self.counter = 0
        self.rollovers = 0
        self.error = None

    def rollover(self):
        oldest = '%s.%d' % (self.base, MAX_BACKUPS - 1)
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(MAX_BACKUPS - 2, -1, -1):
            src = '%s.%d' % (self.base, i)
            if os.path.exists(src):
                os.rename(src, '%s.%d' % (self.base, i + 1))
        os.rename(self.base, self.base + '.0')
        self.rollovers += 1

    def run(self):
        try:
            deadline = time.monotonic() + self.duration
            while time.monotonic() < deadline:
                fd = os.open(self.base, os.O_WRONLY | os.O_CREAT |
                             os.O_APPEND, 0o600)
                try:
                    for _ in range(LINES_PER_FILE):
                        self.counter += 1
                        os.write(fd, LINE % self.counter)
                finally:
                    os.close(fd)
                self.rollover()
        except Exception as e:  # reported by the test
            self.error = e


def counters(data):
    """The numbers in ``data``; partial first/last lines dropped."""
    lines = data.split(b'\n')
    if lines and len(lines[0]) != 9:
        lines = lines[1:]
    lines = lines[:-1]  # after the last newline: partial or empty
    return [int(line) for line in lines]


class TestRolloverDuringRead(test_fixtures.ChainTestCase):

    def test_readers_never_duplicate(self):
        writer = VirtlogdLike(self.dir, duration=1.5)
        results = []
        errors = []

        def reader(kind):
            while writer.is_alive():
                try:
                    if kind == 'tail':
                        data = self.chain.read_tail(1500)
                    elif kind == 'page':
                        data = self.chain.read(-1500, 1500).data
                    else:
                        data = self.chain.read_tail(10 ** 6, length=100)
                except Exception as e:
                    errors.append(e)
                    return
                results.append(data)

        writer.start()
        readers = [threading.Thread(target=reader, args=(kind,))
                   for kind in ('tail', 'page', 'lines', 'tail')]
        for t in readers:
            t.start()
        writer.join()
        for t in readers:
            t.join()
        self.assertIsNone(writer.error)
        self.assertEqual([], errors)
        self.assertGreater(writer.rollovers, 20)
        self.assertGreater(len(results), 100)
        spanning = 0
        for data in results:
            numbers = counters(data)
            for a, b in zip(numbers, numbers[1:]):
                self.assertLess(a, b, 'duplicate or reordered bytes')
            if len(numbers) > LINES_PER_FILE:
                spanning += 1
        # Reads did cross file boundaries, where a rotation bites.
        self.assertGreater(spanning, len(results) // 4)


class TestReadBetweenTheRenamesOfARollover(test_fixtures.ChainTestCase):
    """A listing taken between ``.0`` -> ``.1`` and the base -> ``.0``.

    The backup numbers then have a gap, behind which nova's read stops: a
    read there would show less than the read before it.
    """

    def test_gap_is_taken_again_until_the_rollover_ends(self):
        self.write('console.log.1', b'first\n')
        self.write('console.log', b'second\n')
        real_sleep = time.sleep
        done = []

        def sleep(seconds):
            if not done:
                # virtlogd's last rename and its new base.
                done.append(True)
                os.rename(os.path.join(self.dir, 'console.log'),
                          os.path.join(self.dir, 'console.log.0'))
                self.write('console.log', b'third\n')
            real_sleep(seconds)
        with mock.patch.object(chain_snapshot.time, 'sleep', sleep):
            self.assertEqual(b'first\nsecond\nthird\n',
                             self.chain.read_tail())
        self.assertTrue(done)

    def test_a_gap_that_stays_is_nova_s(self):
        self.write('console.log.1', b'beyond the gap\n')
        self.write('console.log', b'live\n')
        self.assertEqual(b'live\n', self.chain.read_tail())
