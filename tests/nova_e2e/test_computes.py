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

"""The source's leftover domain, and a source without our driver."""

import libvirt

# base first: it imports nova the way each concurrency mode needs.
from tests.nova_e2e import base
import kombu  # noqa: H306,I100  (after base: nova's monkey patching first)

LINES_PER_STAY = 40
# Our endpoint's topic (the [consolelog] topic default).
TOPIC = 'nova-consolelog'


class LeftoverDomainTest(base.NovaE2ETestCase):
    """Scenario 5: the shut-off source domain our flags leave defined.

    Ours on both computes, one shared instance path (nova 34 calls no
    driver.cleanup after a live migration over a shared path).
    """

    def nova_periodic_tasks(self, name):
        """The source's periodic tasks of nova that look at domains."""
        manager = self.computes[name].manager
        ctxt = base.nova_context.get_admin_context()
        for task in (manager._sync_power_states,
                     manager.update_available_resource,
                     manager._cleanup_running_deleted_instances,
                     manager._run_pending_deletes,
                     manager._cleanup_incomplete_migrations):
            task(ctxt)

    def assertLeftover(self, uuid):
        state, reason = self.domain('alpha', uuid).state()
        self.assertEqual((libvirt.VIR_DOMAIN_SHUTOFF,
                          libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED),
                         (state, reason))

    def assertStillOnBeta(self, server):
        server = self.wait_for_server(server, 'ACTIVE', 'beta')
        self.assertTrue(self.domain('beta', server['id']).isActive())
        return server

    def test_reaped_once_the_instance_lives_elsewhere(self):
        server = self.boot('alpha', LINES_PER_STAY)
        uuid = server['id']
        server, _ = self.live_migrate(server, 'beta')
        after_migration = len(self.stdlog.logger.output)
        # Right after the move: defined and shut off on the source.
        self.assertLeftover(uuid)

        self.nova_periodic_tasks('alpha')
        self.assertLeftover(uuid)
        self.assertStillOnBeta(server)

        # A restart of the source's nova-compute (init_host looks at every
        # domain) with the reaper off for now.
        self.restart_host('alpha')
        self.nova_periodic_tasks('alpha')
        self.assertLeftover(uuid)
        server = self.assertStillOnBeta(server)

        # The reaper, once it runs, undefines it on the real libvirtd.
        self.flags(reaper_interval=1, group='consolelog')
        self.restart_host('alpha')

        def undefined():
            try:
                self.domain('alpha', uuid)
                return False
            except libvirt.libvirtError as e:
                return e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        self.wait_for(undefined, 30, 'the reaper to undefine the domain')
        server = self.assertStillOnBeta(server)
        output = self.wait_for_counter(server, 2 * LINES_PER_STAY)
        values = self.assertWhole(output, 'after the reaper ran')

        complaints = [
            line for line in
            self.stdlog.logger.output[after_migration:].splitlines()
            if (' WARNING [' in line or ' ERROR [' in line) and
            (uuid in line or 'instance-0' in line or
             'instances on the hypervisor' in line)]
        self.assertEqual([], complaints)
        self.assertNoConsoleLogTrouble()
        self.report('5 ours, leftover domain reaped after 2 restarts',
                    values)


class NovaSourceTest(base.NovaE2ETestCase):
    """Scenario 6: nova's driver on the source, ours on the destination."""

    DRIVERS = {'alpha': base.NOVAS, 'beta': base.OURS}
    SHARED = False

    def setUp(self):
        # alpha ran our driver in earlier tests of this process, and the
        # queue of its console-log endpoint outlives it (oslo.messaging
        # does not auto-delete topic queues): calls to it would time out
        # instead of coming back unroutable (doc/source/upgrade.rst). Here
        # alpha has never run ours.
        url = base.RABBIT_URL.replace('rabbit://', 'amqp://', 1)
        with kombu.Connection(url) as conn:
            conn.default_channel.queue_delete('%s.alpha' % TOPIC)
        super().setUp()

    def test_not_migrated_no_failure(self):
        server = self.boot('alpha', LINES_PER_STAY)
        server, _ = self.live_migrate(server, 'beta', block_migration=True)
        output = self.wait_for_counter(server, 2 * LINES_PER_STAY)
        values, problems = base.check_counters(output)
        # The history stayed behind (nova's source deleted it), the
        # migration completed, and ours on beta serves what it has.
        self.assertTrue(problems, 'history kept without our source: %s'
                        % base.describe(values))
        self.assertGreater(values[0], LINES_PER_STAY)
        self.assertEqual([], base.guest.check_sequence(values))
        trouble = self.consolelog_trouble()
        self.assertEqual([], [line for line in trouble if 'ERROR [' in line])
        # Clean: nothing listens for our calls on alpha, which the broker
        # says at once; no step waited out rpc_timeout inside nova's
        # post_live_migration_at_destination.
        self.assertEqual([], [line for line in trouble
                              if 'Timed out' in line or 'timed out' in line])
        self.report('6 nova source -> ours, not migrated (lost 1..%d); ours '
                    'said:%s' % (values[0] - 1, ''.join(
                        '\n    ' + line.split('] ', 1)[-1][:300]
                        for line in trouble)), values)
