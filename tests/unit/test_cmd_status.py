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

"""``nova-consolelog status`` on real chains, stashes and imports."""

import json
import os
import sys

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog import migration

from tests.unit import status_tree

UUID_A = status_tree.UUID_A
UUID_B = status_tree.UUID_B
UUID_C = status_tree.UUID_C


class StatusTest(status_tree.StatusTreeTestCase):

    def test_json(self):
        stash = self.populate()
        before = self.snapshot()
        code, out, err = self.status('--format', 'json')
        self.assertEqual(cl_main.EXIT_OK, code, err)
        state = json.loads(out)
        self.assertEqual(self.instances, state['instances_path'])
        a = state['instances'][UUID_A]
        self.assertEqual((1, 300, 2, 250),
                         (a['history_files'], a['history_bytes'],
                          a['log_files'], a['log_bytes']))
        self.assertEqual(['console.history.000001', 'console.log.0',
                          'console.log'], [f['name'] for f in a['chain']])
        self.assertEqual([('host1-stash1', 150, 100, 150)],
                         [(p['import_id'], p['staged_bytes'],
                           p['verified_bytes'], p['total_bytes'])
                          for p in a['partial_imports']])
        self.assertEqual([], a['stashes'])
        self.assertEqual([], a['handovers'])
        b = state['instances'][UUID_B]
        self.assertEqual(1, len(b['stashes']))
        s = b['stashes'][0]
        self.assertEqual((stash.stash_id, 3, 100),
                         (s['stash_id'], s['files'], s['bytes']))
        self.assertEqual(['console.log.1', 'console.log.0', 'console.log'],
                         s['names'])
        self.assertLess(s['age'], 60)
        self.assertFalse(s['expired'])
        self.assertEqual([('host1', 'source', 'host2', 'stashed')],
                         [(h['recorded_by'], h['role'], h['peer'],
                           h['state']) for h in b['handovers']])
        self.assertEqual([], a['errors'] + b['errors'])
        # Read-only: not a byte, name or mtime changed.
        self.assertEqual(before, self.snapshot())

    def test_text(self):
        stash = self.populate()
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn('instance %s' % UUID_A, out)
        self.assertIn('history: 1 file(s), 300 B; virtlogd files: 2, 250 B',
                      out)
        self.assertIn('partial import host1-stash1: 100 B written of '
                      '150 B', out)
        self.assertIn('resumed by the next pull of that source', out)
        self.assertIn('stash %s: 3 file(s), 100 B, ' % stash.stash_id, out)
        self.assertIn('hand-over recorded by host1: source, peer host2, '
                      'state stashed', out)
        # Each unfinished item says what it waits for.
        self.assertIn('why: waiting for host2 to collect and release the '
                      'stash', out)

    def test_a_running_import_is_told_from_an_abandoned_one(self):
        self.populate()
        imp = self.chain(UUID_A).begin_import(
            'host1-stash1', [('console.log.0', 100), ('console.log', 50)],
            {'console.log.0': (4096, ['0' * 64]),
             'console.log': (4096, ['0' * 64])})
        self.addCleanup(imp.close)
        code, out, err = self.status('--instance', UUID_A)
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn('a pull is running', out)

    def test_installed_not_released_says_why(self):
        self.populate()
        record = migration.HandoverRecord(
            os.path.join(self.conf.consolelog.instances_path,
                         '.consolelog-stash', migration.RECORDS_DIR,
                         'host3'), UUID_A)
        record.save(role='destination', peer='host1', state='installed')
        code, out, err = self.status('--instance', UUID_A)
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn("the release of the source's stash is owed", out)

    def test_expired_stash(self):
        self.populate()
        with open(self.config_file, 'a') as f:
            f.write('stash_expiry = 0\n')
        code, out, err = self.status('--instance', UUID_B)
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn('(expired: deleted by the next periodic run)', out)

    def test_one_instance(self):
        self.populate()
        code, out, err = self.status('--instance', UUID_B, '--format',
                                     'json')
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertEqual([UUID_B], list(json.loads(out)['instances']))

    def test_nothing_for_instance(self):
        self.populate()
        code, out, err = self.status('--instance', UUID_C)
        self.assertEqual(cl_main.EXIT_NOTHING, code)
        self.assertIn('no console-log state on this host', out)

    def test_empty_host(self):
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_OK, code, err)
        self.assertIn('no console-log state on this host', out)

    def test_malformed_uuid(self):
        for bad in ('not-a-uuid', '../' + UUID_A, UUID_A + '/..', ''):
            code, out, err = self.status('--instance', bad)
            self.assertEqual(cl_main.EXIT_USAGE, code, bad)
            self.assertIn('must be an instance uuid', err)
            self.assertNotIn('Traceback', err)

    def test_missing_instances_path(self):
        with open(self.config_file, 'w') as f:
            f.write('[consolelog]\ninstances_path = %s/nope\n' % self.root)
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_USAGE, code)
        self.assertIn('does not exist', err)
        self.assertFalse(os.path.exists(os.path.join(self.root, 'nope')))

    def test_unsafe_member_is_reported(self):
        self.populate()
        secret = os.path.join(self.root, 'secret')
        with open(secret, 'w') as f:
            f.write('do not read')
        os.symlink(secret, os.path.join(self.instances, UUID_A,
                                        'console.log.1'))
        before = self.snapshot()
        code, out, err = self.status()
        self.assertEqual(cl_main.EXIT_FAILED, code)
        self.assertIn('ERROR: ', out)
        self.assertIn('symbolic link', out)
        self.assertNotIn('do not read', out)
        # The other instance is still reported.
        self.assertIn('instance %s' % UUID_B, out)
        self.assertEqual(before, self.snapshot())

    def test_unreadable_progress_record(self):
        self.populate()
        sidecar = os.path.join(
            self.instances, UUID_A,
            cl_chain.PARTIAL_PREFIX + 'host1-stash1' +
            cl_chain.SIDECAR_SUFFIX)
        with open(sidecar, 'w') as f:
            f.write('{not json')
        code, out, err = self.status('--instance', UUID_A)
        self.assertEqual(cl_main.EXIT_FAILED, code)
        self.assertIn('progress of import host1-stash1 unreadable', out)

    def test_help(self):
        e = self.assertRaises(SystemExit, self.status, '--help')
        self.assertEqual(0, e.code)
        text = sys.stdout.getvalue()
        for word in ('--instance', '--format', 'stashes', 'Exit status'):
            self.assertIn(word, text)
