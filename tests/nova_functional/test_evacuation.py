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

"""Evacuation through nova's API: the console history kept or collected.

``host1`` runs the guest and goes down (its service stopped and forced
down); ``POST /servers/{id}/action {"evacuate": {}}`` rebuilds the guest
on ``host2``. On a shared instance path the spawn's QEMU start keeps the
chain in place. On a non-shared path the older output stays on host1:
host2 owes it, its reboots meanwhile keep their output behind the
reserved slot, and once host1 is back (nova's ``init_host`` destroys the
evacuated guest, our driver stashes first) host2's periodic task collects
it, merged before everything host2 wrote.

QEMU starts are faithful (``fake_qemu.FakeQemu``: virtlogd's
truncation, one descriptor per QEMU).
"""

import os
import time

import fixtures

from nova_consolelog.handover import evacuation
from tests.nova_functional import base
from tests.nova_functional import fake_qemu

LINES = 30


class EvacuationTestBase(base.ConsoleLogNovaTestBase):

    shared = False

    def setUp(self):
        super().setUp()
        self.qemu = self.useFixture(fake_qemu.FakeQemu(self))
        # host1 is down: a probe must not hold the test for long.
        self.useFixture(fixtures.MockPatchObject(evacuation, 'PROBE_TIMEOUT',
                                                 1))
        self.host1_path = os.path.join(self.root, 'host1')
        self.start_host('host1')
        self.start_host('host2',
                        path=self.host1_path if self.shared else None)
        server = self._create_server(host='host1', networks='none')
        self.server = server
        self.uuid = server['id']
        self.boots = 0
        self.boot_prints()

    def boot_prints(self):
        self.boots += 1
        self.qemu.guest_prints(self.uuid, [
            b'boot %02d line %04d' % (self.boots, i) for i in range(LINES)])

    def everything(self):
        return fake_qemu.text(self.qemu.printed[self.uuid])

    def host1_down(self):
        self.computes['host1'].stop()
        service = self.api.get_services(binary='nova-compute',
                                        host='host1')[0]
        self.api.put_service(service['id'], {'forced_down': True})

    def evacuate(self):
        self.host1_down()
        before = len(self.qemu.starts[self.uuid])
        self.server = self._evacuate_server(
            self.server, expected_host='host2', expected_state='ACTIVE')
        starts = self.qemu.starts[self.uuid][before:]
        self.assertEqual(['host2'], [host for host, _via in starts])
        self.assertIn('spawn', starts[0][1])
        self.boot_prints()

    def host1_back(self):
        """host1's nova-compute starts again: init_host destroys its copy."""
        self.flags(instances_path=self.host1_path)
        self.restart_compute_service('host1')
        service = self.api.get_services(binary='nova-compute',
                                        host='host1')[0]
        self.api.put_service(service['id'], {'forced_down': False})

    def history(self, host):
        return sorted(n for n in os.listdir(self.instance_dir(host,
                                                              self.uuid))
                      if n.startswith('console.history.'))


class TestEvacuationNonShared(EvacuationTestBase):

    def test_history_collected_when_the_old_host_is_back(self):
        evacuated = self.everything()
        self.evacuate()
        record = self.computes['host2'].driver.consolelog.record(
            self.uuid).load()
        self.assertEqual('awaiting_source', record['state'])
        self.assertEqual('host1', record['peer'])
        self.assertEqual(['console.history.000001'], self.history('host2'))
        # A reboot on host2 before host1 is back: kept behind the slot.
        self.server = self._reboot_server(self.server, hard=True)
        self.boot_prints()
        since = self.everything()[len(evacuated):]
        self.assertEqual(since, self.console_output(self.server))
        # host1 is down: the periodic probe fails fast and backs off.
        driver2 = self.computes['host2'].driver
        driver2.consolelog_periodic_task()
        self.assertEqual(1, driver2.consolelog.record(self.uuid).load()[
            'probe_failures'])

        self.host1_back()
        # nova destroyed its copy (the directory went), our stash stayed,
        # for host2 only.
        self.assertFalse(os.path.exists(self.instance_dir('host1',
                                                          self.uuid)))
        stashes = self.computes['host1'].driver.consolelog.stashes(self.uuid)
        self.assertEqual(['host2'], [s.destination for s in stashes])
        self.assertIsNone(self.domain('host1', self.uuid))

        driver2.consolelog.record(self.uuid).update(next_probe=0)
        driver2.consolelog.evacuation._silent_until.clear()
        started = time.monotonic()
        driver2.consolelog_periodic_task()
        self.collect_seconds = time.monotonic() - started
        self.assertIsNone(driver2.consolelog.record(self.uuid).load())
        self.assertEqual(self.everything(), self.console_output(self.server))
        self.assertEqual(['console.history.000001', 'console.history.000002'],
                         self.history('host2'))
        self.assertEqual([], self.computes['host1'].driver.consolelog.stashes(
            self.uuid))
        self.assertIn('Collected the console history of instance %s left on '
                      'host host1 by its evacuation, %d byte(s)' % (
                          self.uuid, len(evacuated)),
                      self.stdlog.logger.output)

    def test_deleted_before_the_old_host_is_back(self):
        self.evacuate()
        self._delete_server(self.server)
        self.assertIsNone(self.computes['host2'].driver.consolelog.record(
            self.uuid).load())


class TestEvacuationShared(EvacuationTestBase):

    shared = True

    def test_history_kept_in_place(self):
        self.evacuate()
        driver2 = self.computes['host2'].driver
        self.assertIsNone(driver2.consolelog.record(self.uuid).load())
        self.assertEqual(self.everything(), self.console_output(self.server))
        self.host1_back()
        # destroy_disks=False on shared storage: nothing stashed, the
        # directory and its history stay.
        self.assertEqual([], self.computes['host1'].driver.consolelog.stashes(
            self.uuid))
        self.assertIsNone(self.domain('host1', self.uuid))
        self.assertEqual(self.everything(), self.console_output(self.server))
