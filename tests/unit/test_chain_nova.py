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

"""Differential test: our merged read against nova's console read.

The reference below re-states, from their documented behaviour, three
pieces of nova (master, checked for 34.0.0):

* ``nova.privsep.path.last_bytes(path, num)``: seek to ``-num`` from the
  end (to the start when the file is shorter: EINVAL), return the rest of
  the file and the count of bytes before that point;
* ``LibvirtDriver._get_console_output_file``: starting with
  ``console.log``, then ``console.log.0``, ``.1``, …, while bytes are still
  wanted and ``os.path.exists(path)``, prepend ``last_bytes(path,
  wanted)`` and subtract what was read; it stops at the first missing file
  (nothing at all when ``console.log`` is missing);
* ``ComputeManager._tail_log``: ``length`` 0 gives ``b''``, otherwise
  ``b'\\n'.join(log.split(b'\\n')[-length:])``.
"""

import errno
import os
import random
import shutil

from tests import fixtures as test_fixtures


def nova_last_bytes(path, num):
    with open(path, 'rb') as f:
        try:
            f.seek(-num, os.SEEK_END)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            f.seek(0, os.SEEK_SET)
        remaining = f.tell()
        return f.read(), remaining


def nova_console_output(console_log, max_bytes):
    wanted = max_bytes
    log_data = b''
    i = 0
    path = console_log
    while wanted > 0 and os.path.exists(path):
        data, _remaining = nova_last_bytes(path, wanted)
        log_data = data + log_data
        wanted -= len(data)
        path = '%s.%d' % (console_log, i)
        i += 1
    return log_data


def nova_tail_log(log, length):
    if length == 0:
        return b''
    return b'\n'.join(log.split(b'\n')[-length:])


class TestAgainstNova(test_fixtures.ChainTestCase):

    CASES = 600

    def _content(self, rnd, size):
        style = rnd.randrange(4)
        if style == 0:
            return bytes(rnd.randrange(256) for _ in range(size))
        if style == 1:
            return bytes(rnd.choice(b'ab\n') for _ in range(size))
        if style == 2:
            return (b'line\r\n' * (size // 6 + 1))[:size]
        return rnd.randbytes(size)

    def _size(self, rnd, max_bytes):
        return rnd.choice([
            0, 1, 2, max_bytes - 1, max_bytes, max_bytes + 1,
            max(0, max_bytes // 2), rnd.randrange(0, 3 * max_bytes + 2),
            rnd.randrange(0, 40)])

    def _generate(self, rnd):
        """A chain in self.dir; returns (max_bytes, length)."""
        max_bytes = rnd.choice([1, 2, 7, 64, 100, 257, 1000,
                                rnd.randrange(1, 3000)])
        count = rnd.randrange(0, 6)
        names = ['console.log'] + ['console.log.%d' % i
                                   for i in range(count)]
        for name in names:
            if name == 'console.log' and rnd.random() < 0.1:
                continue  # console.log missing
            if name != 'console.log' and rnd.random() < 0.2:
                continue  # a gap in the backups
            size = max(0, self._size(rnd, max_bytes))
            self.write(name, self._content(rnd, size))
        length = rnd.choice([None, None, 0, 1, 2, 3, 10,
                             rnd.randrange(1, 50)])
        return max_bytes, length

    def test_random_chains(self):
        rnd = random.Random(20261125)
        compared = 0
        nonempty = 0
        for case in range(self.CASES):
            shutil.rmtree(self.dir)
            os.mkdir(self.dir)
            max_bytes, length = self._generate(rnd)
            expected = nova_console_output(
                os.path.join(self.dir, 'console.log'), max_bytes)
            if length is not None:
                expected = nova_tail_log(expected, length)
            actual = self.chain.read_tail(max_bytes, length)
            self.assertEqual(
                expected, actual,
                'case %d: files %s, max_bytes %d, length %s' % (
                    case, [(f.name, f.size) for f in self.chain.scan()],
                    max_bytes, length))
            if length is None:
                # The paged read's last page is the same bytes.
                self.assertEqual(expected,
                                 self.chain.read(-max_bytes,
                                                 max_bytes).data)
            compared += 1
            nonempty += bool(expected)
        self.assertEqual(self.CASES, compared)
        # The generator exercised real data, not only empty chains.
        self.assertGreater(nonempty, self.CASES // 2)

    def test_default_size_real_scale(self):
        # nova's MAX_CONSOLE_BYTES with files around it.
        rnd = random.Random(7)
        max_bytes = 100 * 1024
        for sizes in ((max_bytes,), (max_bytes + 1, 5),
                      (30000, 40000, 50000), (0, max_bytes - 1, 2),
                      (3 * max_bytes, max_bytes)):
            shutil.rmtree(self.dir)
            os.mkdir(self.dir)
            names = ['console.log'] + ['console.log.%d' % i
                                       for i in range(len(sizes) - 1)]
            for name, size in zip(names, sizes):
                self.write(name, rnd.randbytes(size))
            expected = nova_console_output(
                os.path.join(self.dir, 'console.log'), max_bytes)
            self.assertEqual(expected, self.chain.read_tail())
            self.assertEqual(nova_tail_log(expected, 5),
                             self.chain.read_tail(length=5))

    def test_history_extends_nova(self):
        # With history the result is nova's read with the history before
        # it, cut to max_bytes.
        rnd = random.Random(11)
        for _case in range(100):
            shutil.rmtree(self.dir)
            os.mkdir(self.dir)
            max_bytes, _length = self._generate(rnd)
            history = b''
            for seq in range(1, rnd.randrange(1, 4)):
                data = self._content(rnd, self._size(rnd, max_bytes))
                self.write('console.history.%06d' % seq, data)
                history += data
            nova = nova_console_output(
                os.path.join(self.dir, 'console.log'), 10 ** 9)
            expected = (history + nova)[-max_bytes:]
            self.assertEqual(expected, self.chain.read_tail(max_bytes))
