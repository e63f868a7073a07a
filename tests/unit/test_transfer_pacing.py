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

"""The pulls' pacing: token bucket and back-off, on a fake clock."""

import os
import uuid

from oslotest import base as test_base

from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog import transfer
from nova_consolelog.transfer import pacing

from tests import fixtures as test_fixtures

MB = 1000 * 1000


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class TestPacer(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.clock = Clock()
        self.pacer = pacing.Pacer(10 * MB, clock=self.clock,
                                  sleep=self.clock.sleep)

    def test_zero_is_unlimited(self):
        pacer = pacing.Pacer(0, clock=self.clock, sleep=self.clock.sleep)
        for _ in range(100):
            self.assertEqual(0.0, pacer.take(8 * MB))
        pacer.observe(10.0)
        pacer.blocked('alarm')
        self.assertEqual([], self.clock.slept)

    def test_rate_is_kept_after_a_one_second_burst(self):
        started = self.clock.now
        for _ in range(11):
            self.pacer.take(8 * MB)
        # 88 MB at 10 MB/s with 10 MB of burst: 7.8 s.
        self.assertAlmostEqual(7.8, self.clock.now - started, places=6)

    def test_full_in_and_waited(self):
        self.assertEqual(0.0, self.pacer.full_in())
        self.pacer.take(8 * MB)
        self.assertAlmostEqual(0.8, self.pacer.full_in())
        self.clock.now += 0.5
        self.assertAlmostEqual(0.3, self.pacer.full_in())
        self.assertEqual(0.0, self.pacer.waited)
        # 7 MB in the bucket: 9 MB more is 0.2 s of debt, waited and
        # counted.
        waited = self.pacer.take(9 * MB)
        self.assertAlmostEqual(0.2, waited)
        self.assertAlmostEqual(0.2, self.pacer.waited)
        self.assertAlmostEqual(1.0, self.pacer.full_in())
        off = pacing.Pacer(0, clock=self.clock, sleep=self.clock.sleep)
        off.take(8 * MB)
        self.assertEqual(0.0, off.full_in())

    def test_wait_is_bounded_by_the_deadline(self):
        self.pacer.take(10 * MB)
        self.assertEqual(0.5, self.pacer.take(8 * MB, max_wait=0.5))

    def test_high_latency_halves_once_per_interval_down_to_the_floor(self):
        self.pacer.observe(0.0003)
        self.pacer.observe(0.004)  # below LATENCY_MIN: no congestion
        self.pacer.observe(0.004)
        self.assertEqual(10 * MB, self.pacer.rate)
        self.pacer.observe(0.006)
        self.assertEqual(5 * MB, self.pacer.rate)
        self.assertEqual(1, self.pacer.backoffs)
        self.pacer.observe(0.200)  # within BACKOFF_INTERVAL
        self.assertEqual(5 * MB, self.pacer.rate)
        for _ in range(10):
            self.clock.now += pacing.BACKOFF_INTERVAL
            self.pacer.observe(0.200)
        self.assertEqual(10 * MB * pacing.FLOOR, self.pacer.rate)

    def test_a_probe_that_reached_no_broker_is_no_sample(self):
        self.pacer.observe(None)
        self.assertIsNone(self.pacer._baseline)
        self.pacer.observe(0.0003)
        self.pacer.observe(None)
        self.assertEqual(10 * MB, self.pacer.rate)
        self.assertEqual(0.0003, self.pacer._baseline)

    def test_one_pull_of_the_process_probes_per_interval(self):
        self.assertTrue(self.pacer.probe_due(0.5))
        self.assertFalse(self.pacer.probe_due(0.5))
        self.clock.now += 0.49
        self.assertFalse(self.pacer.probe_due(0.5))
        self.clock.now += 0.02
        self.assertTrue(self.pacer.probe_due(0.5))
        self.assertFalse(self.pacer.probe_due(0.5))
        off = pacing.Pacer(0, clock=self.clock, sleep=self.clock.sleep)
        self.assertFalse(off.probe_due(0.5))

    def test_recovers_slowly_after_quiet(self):
        self.pacer.observe(0.0003)
        self.pacer.observe(0.100)
        self.assertEqual(5 * MB, self.pacer.rate)
        self.clock.now += pacing.RECOVER_AFTER - 0.1
        self.pacer.take(1)
        self.assertEqual(5 * MB, self.pacer.rate)
        self.clock.now += 2.1
        self.pacer.take(1)
        # 2 s of recovery at 1/20 of the cap per second.
        self.assertAlmostEqual(6 * MB, self.pacer.rate, delta=1)
        self.clock.now += 60
        self.pacer.take(1)
        self.assertEqual(10 * MB, self.pacer.rate)

    def test_baseline_drifts_up_slowly(self):
        other = pacing.Pacer(10 * MB, clock=self.clock,
                             sleep=self.clock.sleep)
        other.observe(0.030)
        other.observe(0.200)
        self.assertEqual(5 * MB, other.rate)
        self.pacer.observe(0.030)
        # 20 minutes later 0.2 s is within 3x the drifted baseline.
        self.clock.now += 1200
        self.pacer.observe(0.200)
        self.assertEqual(10 * MB, self.pacer.rate)

    def test_blocked_holds_the_floor_until_unblocked(self):
        self.pacer.blocked('memory alarm')
        self.assertEqual(10 * MB * pacing.FLOOR, self.pacer.rate)
        self.clock.now += 60
        self.pacer.take(1)
        self.assertEqual(10 * MB * pacing.FLOOR, self.pacer.rate)
        self.pacer.unblocked()
        self.clock.now += pacing.RECOVER_AFTER + 1
        self.pacer.take(1)
        self.assertGreater(self.pacer.rate, 10 * MB * pacing.FLOOR)

    def test_bulk_connection_blocked_reaches_every_pacer(self):
        conf = test_fixtures.new_conf()
        conf.set_override('bulk_rate_limit', 12345 * 1000,
                          group='consolelog')
        pacer = pacing.pacer_for(conf)
        self.assertIs(pacer, pacing.pacer_for(conf))
        cl_bulk._on_blocked('low on memory')
        self.assertEqual(pacer.cap * pacing.FLOOR, pacer.rate)
        cl_bulk._on_unblocked()
        self.assertFalse(pacer._blocked)


class TestPulledAtTheRate(test_base.BaseTestCase):
    """A real pull on fake:// asks chunk by chunk through the pacer."""

    def test_chunk_requests_take_tokens(self):
        hosts = self.useFixture(test_fixtures.Hosts())
        src = hosts.start('src')
        instance = str(uuid.uuid4())
        files = test_fixtures.sample_chain()
        test_fixtures.write_chain(src, instance, files)
        conf, rpcapi = hosts.client('dst', bulk_rate_limit=54321)
        pacer = pacing.pacer_for(conf)
        taken = []
        real = pacer.take
        pacer.take = lambda n, max_wait=None: taken.append(n) or real(
            0, max_wait)
        self.addCleanup(setattr, pacer, 'take', real)
        os.makedirs(os.path.join(conf.consolelog.instances_path, instance))
        result = transfer.pull(conf, rpcapi, 'src', instance,
                               local_host='dst')
        total = len(test_fixtures.chain_bytes(files))
        self.assertEqual(total, result.bytes)
        self.assertEqual(total, sum(taken))
