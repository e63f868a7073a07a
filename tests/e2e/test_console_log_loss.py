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

"""The problem, on real libvirtd + virtlogd + QEMU, without our steps.

A live migration followed by nova's cleanup loses the console history: the
destination's QEMU start makes virtlogd truncate the log (``append="off"``)
and, on a non-shared path, the source's cleanup deletes the rest. These
tests assert that the loss is observed; they prove that the harness and
the counting guest can see what the feature must prevent.
"""

import os
import shutil

from oslo_log import log as logging

from nova_consolelog import virt

from tests.e2e import base
from tests.e2e import guest

LOG = logging.getLogger(__name__)


class ConsoleLogLossTest(base.E2ETestCase):

    def _migrate_and_clean_up(self, shared):
        a, b = self.a, self.b
        uuid = self.start_guest(a, shared)
        src_dir, dst_dir = a.instance_dir(uuid, shared), \
            b.instance_dir(uuid, shared)
        before = self.wait_for_counter(src_dir, base.LINES_PER_HOP)
        self.assertEqual([], guest.check_sequence(before))
        self.assertEqual(1, before[0])

        if not shared:
            os.makedirs(dst_dir)  # nova's pre_live_migration
        self.migrate(a, b, uuid)
        self.assertTrue(virt.wait_for_shutoff(
            a.conn, self.domain(a, uuid), timeout=30))
        if not shared:
            shutil.rmtree(src_dir)  # nova's driver.cleanup()

        after = self.wait_for_counter(dst_dir,
                                      before[-1] + base.LINES_PER_HOP)
        LOG.info('%s (shared=%s): source logged 1..%d before the migration '
                 '(%.2f s); destination has %d..%d (%d lines)', uuid, shared,
                 before[-1], self.timings[0], after[0], after[-1],
                 len(after))
        # The loss: nothing the guest printed on the source survives.
        self.assertGreater(after[0], before[-1])
        self.assertEqual(set(), set(range(1, before[-1] + 1)) & set(after))
        return after

    def test_non_shared_instance_path_loses_history(self):
        after = self._migrate_and_clean_up(shared=False)
        # What the destination wrote itself is whole: the guest and the
        # reading see every line.
        self.assertEqual([], guest.check_sequence(after))

    def test_shared_instance_path_loses_history(self):
        self._migrate_and_clean_up(shared=True)
