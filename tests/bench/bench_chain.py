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

"""Merged console read: cost must follow max_bytes, not the chain's size.

A chain of 4 x 256 MiB files (sparse, with a real tail) against 4 x 64 KiB
files, both read for the last 100 KiB (nova's MAX_CONSOLE_BYTES). Goals:
time ratio big/small <= 1.2; bytes read <= max_bytes + 64 KiB.
"""

import os
import shutil
import statistics
import tempfile
import time
from unittest import mock

from nova_consolelog import chain as cl_chain

from tests import fixtures as test_fixtures

MAX_BYTES = 100 * 1024
BIG = 256 * 1024 * 1024
SMALL = 64 * 1024
TAIL = 128 * 1024
NAMES = ('console.log.2', 'console.log.1', 'console.log.0', 'console.log')
ROUNDS = 101


def _text(size, seed):
    line = b'[%9d] guest console line from file %d ........................\n'
    out = bytearray()
    n = 0
    while len(out) < size:
        out += line % (n, seed)
        n += 1
    return bytes(out[:size])


def _make_chain(directory, size):
    os.mkdir(directory)
    for i, name in enumerate(NAMES):
        with open(os.path.join(directory, name), 'wb') as f:
            real = min(size, TAIL)
            if size > real:
                f.truncate(size - real)
                f.seek(size - real)
            f.write(_text(real, i))


def _rchar():
    with open('/proc/self/io') as f:
        for line in f:
            if line.startswith('rchar:'):
                return int(line.split()[1])
    return 0


def _median_seconds(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bytes_read(fn):
    """(rchar delta, bytes returned by pread) of one call."""
    counted = []
    real_pread = os.pread

    def pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        counted.append(len(data))
        return data

    before = _rchar()
    with mock.patch.object(cl_chain.os, 'pread', pread):
        fn()
    return _rchar() - before, sum(counted)


def run():
    conf = test_fixtures.new_conf()
    work = tempfile.mkdtemp(prefix='bench-chain-')
    try:
        big_dir = os.path.join(work, 'big')
        small_dir = os.path.join(work, 'small')
        _make_chain(big_dir, BIG)
        _make_chain(small_dir, SMALL)
        big = cl_chain.ConsoleLogChain(big_dir, conf=conf)
        small = cl_chain.ConsoleLogChain(small_dir, conf=conf)
        for chain in (big, small):
            if len(chain.read_tail(MAX_BYTES)) != MAX_BYTES:
                raise RuntimeError('%s: wrong read size' % chain)
        cases = {
            'read_tail': lambda c: c.read_tail(MAX_BYTES),
            'read(-max)': lambda c: c.read(-MAX_BYTES, MAX_BYTES),
            'read_tail+length': lambda c: c.read_tail(MAX_BYTES, 50),
        }
        print('chain of %d files: %d MiB each (sparse, %d KiB real tail) '
              'vs %d KiB each; max_bytes %d KiB; median of %d' % (
                  len(NAMES), BIG // 2 ** 20, TAIL // 1024, SMALL // 1024,
                  MAX_BYTES // 1024, ROUNDS))
        for label, fn in cases.items():
            for chain in (big, small):
                fn(chain)  # warm the page cache
            t_small = _median_seconds(lambda: fn(small), ROUNDS)
            t_big = _median_seconds(lambda: fn(big), ROUNDS)
            rchar, preads = _bytes_read(lambda: fn(big))
            ratio = t_big / t_small
            print('  %-17s small %7.1f us  big %7.1f us  ratio %.2f '
                  '(goal <= 1.2) %s' % (
                      label, t_small * 1e6, t_big * 1e6, ratio,
                      'ok' if ratio <= 1.2 else 'OVER'))
            limit = MAX_BYTES + 64 * 1024
            print('  %-17s bytes read on the big chain: rchar %d, pread %d '
                  '(goal <= %d) %s' % (
                      '', rchar, preads, limit,
                      'ok' if max(rchar, preads) <= limit else 'OVER'))
    finally:
        shutil.rmtree(work)
