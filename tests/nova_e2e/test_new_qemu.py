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

"""Every other new QEMU nova starts (issue 12), through nova's API.

The guest's counter starts at 1 at every boot: the console must hold one
run 1..k per boot since the first, each whole, and a run that goes on
where a resumed guest continues.
"""

# base first: it imports nova the way each concurrency mode needs.
from tests.nova_e2e import base
from tests.e2e import guest  # noqa: H306


class NewQemuTest(base.NovaE2ETestCase):
    """Ours on alpha keeps every boot; nova's own (the control) does not.

    One shared instance path; everything on alpha.
    """

    def operations(self):
        """(name, operation, new boots)."""
        return [
            ('hard reboot', lambda s: self.reboot(s, 'HARD'), 1),
            ('soft reboot', lambda s: self.reboot(s, 'SOFT'), 1),
            ('stop/start', lambda s: self.action(
                self.action(s, {'os-stop': None}, 'SHUTOFF'),
                {'os-start': None}, 'ACTIVE'), 1),
            ('suspend/resume', lambda s: self.action(
                self.action(s, {'suspend': None}, 'SUSPENDED'),
                {'resume': None}, 'ACTIVE'), 0),
            ('rescue/unrescue', lambda s: self.action(
                self.action(s, {'rescue': {}}, 'RESCUE'),
                {'unrescue': None}, 'ACTIVE'), 2),
        ]

    def run_operations(self, wait_for, check):
        """Boot, then every operation in turn, ``check``-ed after each.

        ``wait_for(server, boots)`` gives the output to check once the
        operation's boots should show; returns ``(boots, seen, output)``,
        ``seen`` the runs after each operation for the report.
        """
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', base.LINES_PER_BOOT)
        boots, seen = 1, []
        for name, operation, new_boots in self.operations():
            server = self.timed(name, operation, server)
            boots += new_boots
            output = wait_for(server, boots)
            runs, problems = base.check_boots(output)
            check(name, boots, runs, problems)
            seen.append('%s: %s' % (name, ' '.join(
                '%d..%d' % run for run in runs)))
        return boots, seen, output

    def test_every_boot_kept(self):
        def check(name, boots, runs, problems):
            self.assertEqual([], problems, 'after %s' % name)
            self.assertEqual(boots, len(runs), 'after %s: %s' % (name, runs))

        boots, seen, output = self.run_operations(self.wait_for_boots, check)
        self.assertNoConsoleLogTrouble()
        self.report('issue 12, ours: %d boots kept (%s); %s' % (
            boots, '; '.join(seen), base.times(self.op_times)),
            guest.counters(output.encode()))

    def test_control_nova_loses_the_boots_before(self):
        # The same operations on nova's driver: after each, the output
        # holds the last boot only (a resumed guest's counting goes on
        # from where it was, without the lines before).
        def check(name, boots, runs, problems):
            self.assertTrue(len(runs) < boots or problems,
                            'after %s nova kept %s' % (name, runs))

        boots, seen, output = self.run_operations(
            lambda server, _boots: self.wait_for_boots(server, 1), check)
        self.report('issue 12, nova (control): %d boots, kept only (%s); %s'
                    % (boots, '; '.join(seen), base.times(self.op_times)),
                    guest.counters(output.encode()))
