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

"""A new QEMU on the same host: the console history survives it.

nova starts a new QEMU at a hard reboot (destroy, then ``_create_guest``),
a soft reboot (shutdown, then ``guest.launch``), a stop and start, a resume,
a rescue... and each start makes the real virtlogd truncate the log
(``append="off"``). The counting guest restarts at 1 at every boot, so the
merged console must hold, in order, one complete 1..N run per boot. The
driver calls ``before_qemu_start`` at those points; here the test calls it
where nova's driver does, around real libvirt calls.
"""

from oslo_log import log as logging

from tests.e2e import base
from tests.e2e import guest
from tests.e2e import migrations

LOG = logging.getLogger(__name__)

# Enough to hold every boot of a test: the read must see them all.
READ_BYTES = 64 * 1024 * 1024


def boots(values):
    """Split counters into runs that each start again at 1."""
    runs = []
    for value in values:
        if value == 1 or not runs:
            runs.append([])
        runs[-1].append(value)
    return runs


class NewQemuTest(migrations.MigrationTestCase):

    def _restart(self, compute, uuid, keep, soft=False):
        """nova's hard reboot (or soft: keep before the shutdown)."""
        dom = self.domain(compute.libvirt_host, uuid)
        if keep and soft:
            compute.steps.before_qemu_start(uuid)
        dom.destroy()
        if keep and not soft:
            compute.steps.before_qemu_start(uuid)
        dom.create()

    def test_reboots_keep_every_boot(self):
        a, _b = self.compute_hosts(shared=False)
        a.conf.set_override('max_console_bytes', READ_BYTES, 'consolelog')
        uuid = self.start_guest(self.a, False)
        directory = self.a.instance_dir(uuid, False)
        seen = [self.wait_for_counter(directory, base.LINES_PER_HOP)[-1]]
        for soft in (False, True, False):
            self._restart(a, uuid, keep=True, soft=soft)
            seen.append(self.wait_for_counter(directory,
                                              base.LINES_PER_HOP)[-1])
        merged = a.steps.get_console_output(uuid)
        runs = boots(guest.counters(merged))
        LOG.info('%s: %d boots kept, last counters %s (seen before each '
                 'restart: %s)', uuid, len(runs), [r[-1] for r in runs],
                 seen)
        self.assertEqual(len(seen), len(runs), [r[-1] for r in runs])
        for run, last_seen in zip(runs, seen):
            self.assertEqual([], guest.check_sequence(run))
            self.assertGreaterEqual(run[-1], last_seen)

    def test_without_the_step_the_history_is_gone(self):
        """The control: a restart alone loses the earlier boot."""
        a, _b = self.compute_hosts(shared=False)
        a.conf.set_override('max_console_bytes', READ_BYTES, 'consolelog')
        uuid = self.start_guest(self.a, False)
        directory = self.a.instance_dir(uuid, False)
        self.wait_for_counter(directory, base.LINES_PER_HOP)
        self._restart(a, uuid, keep=False)
        self.wait_for_counter(directory, base.LINES_PER_HOP)
        runs = boots(guest.counters(a.steps.get_console_output(uuid)))
        self.assertEqual(1, len(runs))
