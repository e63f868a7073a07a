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

"""Moves that start a new QEMU on another host (issue 12), via nova's API.

Cold migration and resize, confirmed and reverted, and evacuation, on the
shared instance path (the only one nova's real driver cold-migrates here:
both computes share one ``my_ip``, so nova takes the path as shared, see
``LibvirtDriver._is_path_shared_with``). Every check compares the counters
of the whole console output: every boot a run 1..k, whole, and what was
seen before an operation still there, in order, after it. nova's own driver
is the control.
"""

import libvirt

# base first: it imports nova the way each concurrency mode needs.
from tests.nova_e2e import base
from tests.e2e import guest  # noqa: H306


def counters(output):
    return guest.counters(output.encode('utf-8'))


class MovesTest(base.NovaE2ETestCase):
    """Ours keeps every boot across hosts; nova's driver keeps the last.

    One shared instance path for both computes.
    """

    def cold_migrate(self, server, dest):
        self.api.post_server_action(server['id'], {'migrate': {
            'host': dest}})
        return self.wait_for_server(server, 'VERIFY_RESIZE', dest)

    def resize(self, server, dest):
        # Two computes and no resize to the same host: the scheduler can
        # only pick the other one.
        self.api.post_server_action(server['id'], {'resize': {
            'flavorRef': self.bigger_flavor()}})
        return self.wait_for_server(server, 'VERIFY_RESIZE', dest)

    def bigger_flavor(self):
        return self._create_flavor(memory_mb=80, vcpu=1, disk=1,
                                   ephemeral=0, swap=0)

    def confirm(self, server, host):
        return self.action(server, {'confirmResize': None}, 'ACTIVE', host)

    def revert(self, server, host):
        return self.action(server, {'revertResize': None}, 'ACTIVE', host)

    def assertKept(self, before, output, what):
        """Every boot of ``before`` still there, whole, in front.

        By runs, not by counters alone: every boot counts from 1, so a new
        boot would pass for a lost one in a comparison of counter lists.
        """
        was, _ = base.check_boots(before)
        now, _ = base.check_boots(output)
        self.assertGreaterEqual(len(now), len(was), what)
        self.assertEqual(was[:-1], now[:len(was) - 1],
                         '%s: an earlier boot changed' % what)
        self.assertEqual(was[-1][0], now[len(was) - 1][0], what)
        self.assertGreaterEqual(now[len(was) - 1][1], was[-1][1],
                                '%s: the last boot before it cut' % what)

    def boots_after(self, server, boots, what):
        output = self.wait_for_boots(server, boots)
        runs, problems = base.check_boots(output)
        self.assertEqual([], problems, what)
        self.assertEqual(boots, len(runs), '%s: %s' % (what, runs))
        return output, runs

    def last_boot_only(self, server):
        """The control's output: one run, the boot since the operation.

        Waits for a run twice as long as a boot gets before an operation,
        so it is the new boot's, not an earlier one's.
        """
        output = self.wait_for_boots(server, 1, 2 * base.LINES_PER_BOOT)
        runs, _ = base.check_boots(output)
        self.assertEqual(1, len(runs), runs)
        return output, runs

    # -- cold migration and resize --------------------------------------

    def test_cold_migration_and_resize(self):
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', base.LINES_PER_BOOT)
        seen = []

        # Cold migration alpha -> beta, confirmed: two boots, both whole.
        before = self.console(server)
        server = self.timed('cold migration', lambda s: self.cold_migrate(
            s, 'beta'), server)
        output, runs = self.boots_after(server, 2, 'after the cold migration')
        self.assertKept(before, output, 'cold migration')
        server = self.timed('confirm', lambda s: self.confirm(s, 'beta'),
                            server)
        # (nova's confirm undefines the source's domain only when
        # instance.host differs from CONF.host, one CONF for both computes
        # here: it may stay defined, shut off.)
        self.assertFalse(_defined(self.hosts['alpha'], server['id']) and
                         self.domain('alpha', server['id']).isActive())
        output, runs = self.boots_after(server, 2, 'after the confirm')
        seen.append('cold migration + confirm: %s' % _runs(runs))

        # Resize beta -> alpha, reverted: the guest is back on beta with
        # both earlier boots and the one after the revert. Its boot on
        # alpha went with nova's destroy there, as its disk changes did.
        before = self.console(server)
        server = self.timed('resize', lambda s: self.resize(s, 'alpha'),
                            server)
        output, runs = self.boots_after(server, 3, 'after the resize')
        self.assertKept(before, output, 'resize')
        server = self.timed('revert', lambda s: self.revert(s, 'beta'),
                            server)
        output, runs = self.boots_after(server, 3, 'after the revert')
        self.assertKept(before, output, 'revert')
        self.assertTrue(self.domain('beta', server['id']).isActive())
        seen.append('resize + revert: %s' % _runs(runs))

        # And once more, confirmed: four boots.
        before = self.console(server)
        server = self.timed('resize', lambda s: self.resize(s, 'alpha'),
                            server)
        server = self.timed('confirm', lambda s: self.confirm(s, 'alpha'),
                            server)
        output, runs = self.boots_after(server, 4, 'after resize + confirm')
        self.assertKept(before, output, 'resize + confirm')
        seen.append('resize + confirm: %s' % _runs(runs))
        self.assertNoConsoleLogTrouble()
        self.report('issue 12, ours, shared path: %s; %s' % (
            '; '.join(seen), base.times(self.op_times)), counters(output))

    def test_control_cold_migration_and_resize(self):
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', base.LINES_PER_BOOT)
        server = self.timed('cold migration', lambda s: self.cold_migrate(
            s, 'beta'), server)
        server = self.timed('confirm', lambda s: self.confirm(s, 'beta'),
                            server)
        # Two boots, and only the one on beta is left.
        self.last_boot_only(server)
        server = self.timed('resize', lambda s: self.resize(s, 'alpha'),
                            server)
        server = self.timed('revert', lambda s: self.revert(s, 'beta'),
                            server)
        output, runs = self.last_boot_only(server)
        self.report('issue 12, nova (control), shared path: after cold '
                    'migration, confirm, resize, revert only %s; %s' % (
                        _runs(runs), base.times(self.op_times)),
                    counters(output))

    # -- evacuation -----------------------------------------------------

    def host_down(self, name, server):
        """``name`` loses power: its nova-compute, then the guest's QEMU.

        The service stops first: a compute that saw its guest stop would
        stop the instance in nova's database (power-state sync), and an
        evacuation then leaves it stopped.
        """
        self._stop_compute(self.computes.pop(name))
        self.domain(name, server['id']).destroy()
        self.api.put_service(self.service_id(name), {'forced_down': True})

    def host_back(self, name, server):
        """``name``'s nova-compute starts: init_host destroys its copy.

        Forced up only after that: nova refuses while the evacuation's
        migration record is not ``completed``.
        """
        self.start_host(name)
        self.wait_for(lambda: self.migrations(server)[-1]['status'] ==
                      'completed', 60, 'the evacuation to be completed')
        self.api.put_service(self.service_id(name), {'forced_down': False})

    def service_id(self, name):
        return self.api.get_services(binary='nova-compute',
                                     host=name)[0]['id']

    def evacuate(self, server, dest):
        self.api.post_server_action(server['id'], {'evacuate': {
            'host': dest}})
        return self.wait_for_server(server, 'ACTIVE', dest)

    def evacuation(self):
        """Boot on alpha, alpha down, evacuate to beta, alpha back.

        Returns the output once the old host is back and its copy gone.
        """
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', base.LINES_PER_BOOT)
        # Read while alpha still answers (reads go to the instance's host).
        before = self.console(server)
        self.host_down('alpha', server)
        server = self.timed('evacuation', lambda s: self.evacuate(
            s, 'beta'), server)
        self.assertTrue(self.domain('beta', server['id']).isActive())
        self.host_back('alpha', server)
        # init_host's _destroy_evacuated_instances removed alpha's domain.
        self.assertFalse(_defined(self.hosts['alpha'], server['id']))
        return server, before

    def test_evacuation(self):
        server, before = self.evacuation()
        output, runs = self.boots_after(server, 2, 'after the evacuation')
        self.assertKept(before, output, 'evacuation')
        self.assertNoConsoleLogTrouble()
        self.report('issue 12, ours, shared path: evacuation, old host '
                    'back: %s; %s' % (_runs(runs), base.times(self.op_times)),
                    counters(output))

    def test_control_evacuation(self):
        server, _ = self.evacuation()
        # Two boots, the one on alpha gone.
        output, runs = self.last_boot_only(server)
        self.report('issue 12, nova (control), shared path: evacuation '
                    'leaves %s; %s' % (_runs(runs), base.times(self.op_times)),
                    counters(output))


def _defined(host, uuid):
    try:
        host.conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return False
    return True


def _runs(runs):
    return ' '.join('%d..%d' % run for run in runs)
