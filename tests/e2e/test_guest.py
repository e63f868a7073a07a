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

"""The e2e oracle itself: the counter parser must see every defect."""

import os

import fixtures
from oslotest import base

from tests.e2e import guest


def lines(*numbers):
    return b''.join(b'cnt %08d\r\n' % n for n in numbers)


class CounterOracleTest(base.BaseTestCase):

    def test_parses_lines_and_ignores_cut_ones(self):
        data = b'0000041\r\n' + lines(42, 43) + b'cnt 000000'
        self.assertEqual([42, 43], guest.counters(data))

    def test_whole_sequence_has_no_problem(self):
        self.assertEqual([], guest.check_sequence([5, 6, 7]))
        self.assertEqual([], guest.check_sequence([]))

    def test_every_defect_is_reported(self):
        for values, problems in [
                ([1, 2, 4], ['3..3 missing']),
                ([1, 2, 2, 3], ['2 after 2 (repeat or reorder)']),
                ([1, 3, 2], ['2..2 missing',
                             '2 after 3 (repeat or reorder)']),
                ([1, 2, 1, 2], ['1 after 2 (repeat or reorder)'])]:
            self.assertEqual(problems, guest.check_sequence(values), values)

    def test_virtlogd_chain_read_oldest_first(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        for name, numbers in [('console.log.1', (1, 2)),
                              ('console.log.0', (3,)),
                              ('console.log', (4, 5)),
                              ('console.history.000001', (0,))]:
            with open(os.path.join(tmp, name), 'wb') as f:
                f.write(lines(*numbers))
        self.assertEqual([1, 2, 3, 4, 5], guest.counters(
            guest.read_virtlogd_chain(tmp)))

    def test_boot_sector_assembles(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        image = guest.build_boot_image(tmp)
        self.assertEqual(guest.FLOPPY_SIZE, os.path.getsize(image))
        with open(image, 'rb') as f:
            sector = f.read(512)
        self.assertEqual(b'\x55\xaa', sector[-2:])
        self.assertIn(b'cnt 00000001\r\n', sector)
