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

"""Console-log migration through the real nova API (non-shared paths).

Every scenario boots a server with ``consolelog.LibvirtDriver`` on both
computes, writes console lines where virtlogd would, live-migrates through
``os-migrateLive`` and reads ``os-getConsoleOutput``.
"""

import os
import time

from nova_consolelog import stash as cl_stash
from nova_consolelog import virt

from tests.nova_functional import base
from tests.nova_functional import guest_lines


lines = guest_lines.lines
text = guest_lines.text


class LiveMigrationTest(base.ConsoleLogNovaTestBase):

    def setUp(self):
        super().setUp()
        self.src = self.start_host('src')
        self.dest = self.start_host('dest')
        self.server = self._create_server(host='src', networks='none')
        self.uuid = self.server['id']
        self.late_lines = {}

    def before_source_stops(self, instance_uuid, dest_host):
        # The guest still runs on the source until the switch-over: its
        # last lines land in the source's console.log.
        for host, extra in self.late_lines.items():
            self.write_console(host, instance_uuid, extra)

    def stashes(self, compute):
        return cl_stash.Stash.list(
            self.uuid, root=compute.driver.consolelog.stash_root,
            conf=compute.driver.consolelog_conf)

    def test_history_follows_the_guest(self):
        # Scenario 1: lines from the source, including the last ones
        # written during the migration, then the destination's, in order.
        before = lines('src', 300)
        late = lines('src-late', 5)
        after = lines('dest', 40)
        self.write_console('src', self.uuid, before[:100], 'console.log.0')
        self.write_console('src', self.uuid, before[100:])
        self.late_lines = {'src': late}

        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.write_console('dest', self.uuid, after)

        self.assertEqual(text(before, late, after),
                         self.console_output(server))
        # nova keeps the last ``length`` pieces of split('\n'); the text
        # ends with a newline, so that is length - 1 lines.
        self.assertEqual(text(after[-6:]),
                         self.console_output(server, length=7))
        self.assertEqual(text(late[-2:], after),
                         self.console_output(server, length=43))
        # The source's stash was released after the destination verified
        # its copy; nova's cleanup deleted the source instance directory.
        self.assertEqual([], self.stashes(self.src))
        self.assertFalse(os.path.exists(self.instance_dir('src', self.uuid)))

    def test_failed_migration_keeps_the_log_on_the_source(self):
        # Scenario 2: the migration job fails; nova rolls back.
        before = lines('src', 50)
        self.write_console('src', self.uuid, before)

        def failing_migration(domain, destination, params, flags):
            domain.fail_job()

        self.useFixture(base.fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            failing_migration))
        server = self._live_migrate(self.server,
                                    migration_expected_state='failed')
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        more = lines('src-after', 3)
        self.write_console('src', self.uuid, more)

        self.assertEqual(text(before, more), self.console_output(server))
        with open(os.path.join(self.instance_dir('src', self.uuid),
                               'console.log'), 'rb') as f:
            self.assertEqual(text(before, more).encode(), f.read())
        self.assertEqual([], self.stashes(self.src))
        self.assertEqual([], self.stashes(self.dest))
        for compute in (self.src, self.dest):
            self.assertIsNone(
                compute.driver.consolelog.record(self.uuid).load())
        self.assertIsNotNone(self.domain('src', self.uuid))

    def test_migrating_back_keeps_everything(self):
        # Scenario 3: src -> dest -> src, lines written on every leg.
        first = lines('src', 120)
        second = lines('dest', 80)
        third = lines('src-again', 30)
        self.write_console('src', self.uuid, first)
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.write_console('dest', self.uuid, second)

        server = self._live_migrate(server)
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        self.write_console('src', self.uuid, third)

        self.assertEqual(text(first, second, third),
                         self.console_output(server))
        self.assertEqual(text(third[-4:]),
                         self.console_output(server, length=5))
        self.assertEqual([], self.stashes(self.src))
        self.assertEqual([], self.stashes(self.dest))

    def test_reaper_undefines_the_source_domain_only_afterwards(self):
        # Scenario 4: the source domain is left defined and shut off by
        # the migration; the periodic task undefines it once nova's
        # database shows the instance on the destination, not before.
        self.write_console('src', self.uuid, lines('src', 10))
        seen_during = []

        def reap_during(instance_uuid, dest_host):
            # Guest switched over, nova's database still says "src".
            seen_during.extend(
                self.src.driver.consolelog_periodic_task())

        seen_at_dest = []
        post_at_dest = self.dest.driver.post_live_migration_at_destination

        def reap_before_host_update(*args, **kwargs):
            # nova's cleanup has run on the source and left the domain;
            # the database still says "src" until this hook returns.
            seen_at_dest.extend(self.src.driver.consolelog_periodic_task())
            return post_at_dest(*args, **kwargs)

        self.after_source_stops = reap_during
        self.dest.driver.post_live_migration_at_destination = (
            reap_before_host_update)
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        # Right after the switch-over the source has not left the domain
        # yet (nova's cleanup has not run): not the reaper's.
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT, 'instance unknown')],
            seen_during)
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT,
                         'instance still on this host')],
            seen_at_dest)

        leftover = self.domain('src', self.uuid)
        self.assertIsNotNone(leftover, 'source domain was undefined')
        self.assertEqual(base.VIR_DOMAIN_SHUTOFF, leftover.state()[0])
        # nova's cleanup ran and kept it; the destination's domain runs.
        self.assertFalse(os.path.exists(self.instance_dir('src', self.uuid)))
        self.assertIsNotNone(self.domain('dest', self.uuid))

        # The destination never reaps the domain it runs.
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT, 'domain not shut off')],
            self.dest.driver.consolelog_periodic_task())

        done = self.src.driver.consolelog_periodic_task()
        self.assertEqual([(self.uuid, virt.UNDEFINED)],
                         [(r.uuid, r.action) for r in done])
        self.assertIsNone(self.domain('src', self.uuid))
        self.assertEqual([], self.src.driver.consolelog_periodic_task())

    def test_reaper_leaves_domains_it_did_not_leave(self):
        # A shut-off domain the driver did not leave behind (a stopped
        # instance here; a resize source would be another) is nova's.
        self.server = self._stop_server(self.server)
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT, 'instance unknown')],
            self.src.driver.consolelog_periodic_task())
        self.assertIsNotNone(self.domain('src', self.uuid))

    def test_reaper_keeps_the_domain_when_the_instance_comes_back(self):
        # src -> dest -> src before any reaper pass: the domain defined
        # on src again is the instance's own and is never undefined.
        self.write_console('src', self.uuid, lines('src', 5))
        server = self._live_migrate(self.server)
        server = self._live_migrate(server)
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT, 'domain not shut off')],
            self.src.driver.consolelog_periodic_task())
        self._stop_server(server)
        # Coming back (pre_live_migration here) dropped src's record of
        # the domain it had left defined: no leftover of ours any more.
        self.assertEqual(
            [virt.Reaped(self.uuid, virt.KEPT, 'instance unknown')],
            self.src.driver.consolelog_periodic_task())
        self.assertIsNotNone(self.domain('src', self.uuid))
        # dest's leftover of the second hop goes.
        self.assertEqual(
            [(self.uuid, virt.UNDEFINED)],
            [(r.uuid, r.action)
             for r in self.dest.driver.consolelog_periodic_task()])


class SharedInstancePathTest(base.ConsoleLogNovaTestBase):
    """Both computes on one instances path (nova sees shared storage)."""

    def setUp(self):
        super().setUp()
        self.src = self.start_host('src')
        self.dest = self.start_host('dest',
                                    path=self.src.driver.instances_path)
        self.server = self._create_server(host='src', networks='none')
        self.uuid = self.server['id']

    def test_chain_survives_the_incoming_qemu_start(self):
        before = lines('src', 150)
        late = lines('src-late', 3)
        after = lines('dest', 20)
        self.write_console('src', self.uuid, before[:50], 'console.log.0')
        self.write_console('src', self.uuid, before[50:])
        # virtlogd's descriptor of the source QEMU's log: it keeps writing
        # into the same file wherever the file is moved.
        log = open(os.path.join(self.instance_dir('src', self.uuid),
                                'console.log'), 'ab')
        self.addCleanup(log.close)

        def source_writes_last_lines(instance_uuid, dest_host):
            log.write(b''.join(line + b'\n' for line in late))
            log.flush()

        self.before_source_stops = source_writes_last_lines
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self.migration_flags[0] & (1 << 7),
                         'nova block-migrated: the path is not shared')
        self.write_console('dest', self.uuid, after)

        self.assertEqual(text(before, late, after),
                         self.console_output(server))
        self.assertEqual([], cl_stash.Stash.list(
            self.uuid, root=self.dest.driver.consolelog.stash_root,
            conf=self.dest.driver.consolelog_conf))

    def _failing_migration(self, incoming_qemu_started):
        def migrate(domain, destination, params, flags):
            if incoming_qemu_started:
                # The destination's QEMU started (virtlogd truncated the
                # shared chain, as far as it was still there) and failed.
                self.virtlogd_truncates('dest', self.uuid)
                with open(os.path.join(self.instance_dir('dest', self.uuid),
                                       'console.log'), 'wb'):
                    pass
            domain.fail_job()

        self.useFixture(base.fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', migrate))

    def _rollback_keeps_the_chain(self, incoming_qemu_started):
        before = lines('src', 60)
        after = lines('src-after', 4)
        self.write_console('src', self.uuid, before[:20], 'console.log.0')
        self.write_console('src', self.uuid, before[20:])
        log = open(os.path.join(self.instance_dir('src', self.uuid),
                                'console.log'), 'ab')
        self.addCleanup(log.close)
        self._failing_migration(incoming_qemu_started)

        server = self._live_migrate(self.server,
                                    migration_expected_state='failed')
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        # The source QEMU never stopped: it writes on through virtlogd's
        # descriptor, wherever the file is now.
        log.write(b''.join(line + b'\n' for line in after))
        log.flush()
        self.assertEqual(text(before, after), self.console_output(server))
        self.assertEqual([], cl_stash.Stash.list(
            self.uuid, root=self.dest.driver.consolelog.stash_root,
            conf=self.dest.driver.consolelog_conf))

    def test_leftover_domain_recorded_hidden_and_reaped(self):
        # nova calls no cleanup() after a live migration on a shared
        # instance path: the source still records the domain it left
        # defined, keeps it out of nova's instance lists (nova's periodic
        # tasks would count it) and the reaper undefines it.
        self.write_console('src', self.uuid, lines('src', 5))
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNotNone(self.domain('src', self.uuid))
        self.assertNotIn(self.uuid, self.src.driver.list_instance_uuids())
        self.assertEqual([], self.src.driver.list_instances())
        self.assertIn(self.uuid, self.dest.driver.list_instance_uuids())
        self.assertEqual(
            [(self.uuid, virt.UNDEFINED)],
            [(r.uuid, r.action)
             for r in self.src.driver.consolelog_periodic_task()])
        self.assertIsNone(self.domain('src', self.uuid))

    def test_rollback_before_the_incoming_qemu_started(self):
        self._rollback_keeps_the_chain(incoming_qemu_started=False)

    def test_rollback_after_the_incoming_qemu_started(self):
        self._rollback_keeps_the_chain(incoming_qemu_started=True)


class PeriodicTaskTest(base.ConsoleLogNovaTestBase):
    """The periodic task runs on its own (a looping call from init_host)."""

    def test_leftover_domain_goes_without_being_asked(self):
        self.flags(reaper_interval=1, group='consolelog')
        self.src = self.start_host('src')
        self.dest = self.start_host('dest')
        server = self._create_server(host='src', networks='none')
        self.write_console('src', server['id'], lines('src', 10))
        kept = []

        def domain_kept(instance_uuid, dest_host):
            # Give the looping call a chance while nova still places the
            # instance on the source: it must keep the domain.
            time.sleep(1.5)
            kept.append(self.domain('src', instance_uuid) is not None)

        self.after_source_stops = domain_kept
        server = self._live_migrate(server)
        self.assertEqual([True], kept)
        self.wait_for(lambda: self.domain('src', server['id']) is None,
                      timeout=15, what='the reaper to undefine the domain')
        self.assertIsNotNone(self.domain('dest', server['id']))
