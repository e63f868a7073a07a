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

import time

# base first: it imports nova the way each concurrency mode needs.
from tests.nova_e2e import base  # noqa: F401
from tests.e2e import guest  # noqa: H306

# Lines a boot prints before the next operation (~18 lines/s).
LINES_PER_BOOT = 20


def check_boots(output):
    """The runs of counters (one per boot) and what is wrong with them.

    A run starts where the counter goes back to 1; every run must be
    1..k, whole and in order. Returns ``(runs, problems)``, ``runs`` as
    ``(first, last)`` pairs.
    """
    if isinstance(output, str):
        output = output.encode('utf-8')
    values = guest.counters(output)
    runs, problems, current = [], [], []
    for value in values + [None]:
        if current and (value is None or value == 1):
            if current[0] != 1:
                problems.append('a boot starting at %d (history lost)'
                                % current[0])
            problems.extend(guest.check_sequence(current))
            runs.append((current[0], current[-1]))
            current = []
        if value is not None:
            current.append(value)
    if not runs:
        problems.append('no counter lines')
    return runs, problems


class NewQemuScenarios:
    """Ours on alpha keeps every boot; nova's own (the control) does not.

    A mixin: it runs in test_live_migration.SharedPathTest, whose hosts are
    up already.
    """

    def fast_shutdown(self):
        # The boot sector ignores ACPI: nova falls back to a hard reboot
        # (soft reboot) and destroys it (stop) after these timeouts.
        self.flags(wait_soft_reboot_seconds=1, group='libvirt')
        self.flags(shutdown_timeout=0)

    def wait_for_boots(self, server, boots, lines=LINES_PER_BOOT):
        """Console output once it shows ``boots`` runs, the last long."""
        def done():
            output = self.console(server)
            runs, _ = check_boots(output)
            if len(runs) >= boots and runs[-1][1] - runs[-1][0] >= lines:
                return output
            return None
        return self.wait_for(done, 60, '%d boots of %s' % (
            boots, server['id']), interval=0.3)

    def reboot(self, server, kind):
        self.api.post_server_action(server['id'], {'reboot': {
            'type': kind}})
        return self.wait_for_server(server, 'ACTIVE', 'alpha')

    def action(self, server, body, status, host='alpha'):
        self.api.post_server_action(server['id'], body)
        return self.wait_for_server(server, status, host)

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

    def timed(self, name, operation, server):
        """Run ``operation(server)``; note its time under ``name``.

        With the time our steps took in it (none with nova's driver).
        """
        started = time.monotonic()
        steps = len(self.step_seconds)
        server = operation(server)
        self.op_times.append((name, time.monotonic() - started,
                              sum(self.step_seconds[steps:])))
        return server

    def test_every_boot_kept(self):
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', LINES_PER_BOOT)
        boots, seen = 1, []
        for name, operation, new_boots in self.operations():
            server = self.timed(name, operation, server)
            boots += new_boots
            output = self.wait_for_boots(server, boots)
            runs, problems = check_boots(output)
            self.assertEqual([], problems, 'after %s' % name)
            self.assertEqual(boots, len(runs), 'after %s: %s' % (name, runs))
            seen.append('%s: %s' % (name, ' '.join(
                '%d..%d' % run for run in runs)))
        self.assertNoConsoleLogTrouble()
        self.report('issue 12, ours: %d boots kept (%s); %s' % (
            boots, '; '.join(seen), times(self.op_times)),
            guest.counters(output.encode()))

    def test_control_nova_loses_the_boots_before(self):
        # The same operations on nova's driver: after each, the output
        # holds the last boot only (a resumed guest's counting goes on
        # from where it was, without the lines before).
        self.fast_shutdown()
        self.op_times = []
        server = self.boot('alpha', LINES_PER_BOOT)
        boots, seen = 1, []
        for name, operation, new_boots in self.operations():
            server = self.timed(name, operation, server)
            boots += new_boots
            output = self.wait_for_boots(server, 1)
            runs, problems = check_boots(output)
            self.assertTrue(len(runs) < boots or problems,
                            'after %s nova kept %s' % (name, runs))
            seen.append('%s: %s' % (name, ' '.join(
                '%d..%d' % run for run in runs)))
        self.report('issue 12, nova (control): %d boots, kept only (%s); %s'
                    % (boots, '; '.join(seen), times(self.op_times)),
                    guest.counters(output.encode()))


def times(op_times):
    """``name 1.23 s (ours 4.5 ms), ...`` for a report line."""
    return ', '.join('%s %.2f s (ours %.1f ms)' % (name, total, 1000 * ours)
                     for name, total, ours in op_times)
