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

"""The hand-over record and its states, the guard, the periodic clean-up.

Real files in a temporary instances directory; no mocks.
"""

import fcntl
import json
import os
import time

from nova_consolelog.handover import periodic
from nova_consolelog.handover import record as cl_record
from nova_consolelog import history_import
from nova_consolelog import migration

from tests import fixtures as test_fixtures

UUID = test_fixtures.UUID
HOUR = 3600


class TestRecordStates(test_fixtures.ChainTestCase):

    def setUp(self):
        super().setUp()
        self.record = cl_record.HandoverRecord(
            os.path.join(self.root, 'records'), UUID)

    def on_disk(self):
        with open(self.record.path) as f:
            return json.load(f)

    def test_states_are_their_values_on_disk(self):
        self.record.save(role=cl_record.Role.DESTINATION, peer='src',
                         state=cl_record.State.PULLING)
        data = self.on_disk()
        self.assertEqual('destination', data['role'])
        self.assertEqual('pulling', data['state'])
        self.assertEqual(cl_record.State.PULLING, self.record.load()['state'])
        self.assertIs(cl_record.State.PULLING,
                      cl_record.State.of(self.record.load()))

    def test_every_state_has_the_value_older_releases_wrote(self):
        # Records written before the enum must still be understood.
        self.assertEqual(
            {'migrating', 'stashed', 'pulling', 'installed'},
            {s.value for s in cl_record.State})
        self.assertEqual({'source', 'destination'},
                         {r.value for r in cl_record.Role})

    def test_unknown_state_is_refused_and_nothing_written(self):
        self.assertRaises(ValueError, self.record.save, role='source',
                          peer='dst', state='half-done')
        self.assertFalse(os.path.exists(self.record.path))
        self.record.save(role='source', peer='dst', state='migrating')
        before = self.on_disk()
        self.assertRaises(ValueError, self.record.update, state='done')
        self.assertRaises(ValueError, self.record.update, role='peer')
        self.assertEqual(before, self.on_disk())

    def test_a_record_from_elsewhere_is_read_as_it_is(self):
        # Whatever a hand or another release left is loaded, not refused:
        # the periodic task decides what to do with it.
        os.makedirs(os.path.dirname(self.record.path))
        with open(self.record.path, 'w') as f:
            json.dump({'role': 'destination', 'peer': 'src',
                       'state': 'unheard-of'}, f)
        data = self.record.load()
        self.assertEqual('unheard-of', data['state'])
        self.assertIsNone(cl_record.State.of(data))
        # Changing another field keeps it.
        self.record.update(peer='other')
        self.assertEqual('unheard-of', self.on_disk()['state'])

    def test_update_without_create(self):
        self.assertIsNone(self.record.update(
            create=False, state=cl_record.State.INSTALLED))
        self.assertFalse(os.path.exists(self.record.path))


class HandoverTestCase(test_fixtures.ChainTestCase):
    """A host's ConsoleLogMigration over the temporary instances path."""

    def setUp(self):
        super().setUp()
        self.steps = migration.ConsoleLogMigration(self.conf, 'host1', None)


class TestGuard(HandoverTestCase):

    def test_a_failing_step_returns_its_default(self):
        with self.assertLogs('nova_consolelog.handover.guard', 'WARNING'):
            self.assertIsNone(self.steps.before_qemu_start('not-a-uuid'))

    def test_retry_pending_never_raises(self):
        os.makedirs(os.path.dirname(self.steps.records_dir))
        # Records directory is a file: listing it fails.
        with open(self.steps.records_dir, 'w'):
            pass
        with self.assertLogs('nova_consolelog.handover.guard', 'WARNING'):
            self.assertEqual([], self.steps.retry_pending())

    def test_disabled_steps_do_nothing(self):
        self.conf.set_override('enabled', False, 'consolelog')
        self.write('console.log', b'boot 1\n')
        self.assertIsNone(self.steps.before_qemu_start(UUID))
        self.assertEqual([], self.steps.retry_pending())
        self.assertEqual(['console.log'], sorted(os.listdir(self.dir)))


class TestAbandonedImports(HandoverTestCase):
    """The periodic task removes imports nobody finished, after their age."""

    def abandon(self, name='host2-stash1', age=0):
        """An import that wrote a checkpoint and was left; its files."""
        before = set(self.partials())
        imp = self.chain.begin_import(
            name, [('console.log', 100)],
            {'console.log': (4096, ['0' * 64])})
        imp.write('console.log', 0, b'x' * 100)
        imp.checkpoint('console.log', 100)
        imp.close()
        files = sorted(set(self.partials()) - before)
        self.assertEqual(2, len(files))
        then = time.time() - age
        for f in files:
            os.utime(os.path.join(self.dir, f), (then, then))
        return files

    def partials(self):
        return sorted(n for n in os.listdir(self.dir)
                      if n.startswith(history_import.PARTIAL_PREFIX))

    def test_default_age_is_the_stash_expiry(self):
        self.conf.set_override('stash_expiry', 2 * HOUR, 'consolelog')
        self.assertEqual(2 * HOUR, periodic.partial_import_max_age(self.conf))
        young = self.abandon(age=HOUR)
        self.steps.retry_pending()
        self.assertEqual(young, self.partials())
        self.abandon(name='host2-stash2', age=3 * HOUR)
        self.steps.retry_pending()
        self.assertEqual(young, self.partials())

    def test_removed_after_the_configured_age_only(self):
        self.conf.set_override('partial_import_max_age', HOUR, 'consolelog')
        young = self.abandon(age=HOUR - 60)
        self.steps.retry_pending()
        self.assertEqual(young, self.partials())
        old = self.abandon(name='host2-stash2', age=HOUR + 60)
        self.assertEqual(sorted(young + old), self.partials())
        self.steps.retry_pending()
        self.assertEqual(young, self.partials())

    def test_never_while_an_import_holds_its_flock(self):
        self.conf.set_override('partial_import_max_age', 0, 'consolelog')
        files = self.abandon(age=HOUR)
        staging = [f for f in files
                   if not f.endswith(history_import.SIDECAR_SUFFIX)][0]
        fd = os.open(os.path.join(self.dir, staging), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.steps.retry_pending()
            self.assertEqual(files, self.partials())
        finally:
            os.close(fd)
        self.steps.retry_pending()
        self.assertEqual([], self.partials())

    def test_other_instances_and_history_untouched(self):
        self.conf.set_override('partial_import_max_age', 0, 'consolelog')
        self.write('console.history.000001', b'old\n')
        self.write('console.log', b'new\n')
        files = self.abandon(age=HOUR)
        os.mkdir(os.path.join(self.root, 'not-an-instance'))
        stray = os.path.join(self.root, 'not-an-instance',
                             history_import.PARTIAL_PREFIX + 'x')
        with open(stray, 'w'):
            pass
        os.utime(stray, (0, 0))
        removed = self.steps.housekeeping.remove_abandoned_imports()
        self.assertEqual({UUID: files}, removed)
        self.assertEqual(['console.history.000001', 'console.log'],
                         sorted(n for n in os.listdir(self.dir)
                                if not n.startswith('.')))
        self.assertTrue(os.path.exists(stray))
