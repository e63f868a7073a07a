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

"""A host's instances, imports and stashes for the status commands.

The ``status`` tests and the tests of ``show`` and ``status`` on an unsafe
tree start from the same tree; no tests here.
"""

import io
import os

import fixtures

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog import conf as cl_conf
from nova_consolelog import migration
from nova_consolelog import stash as cl_stash

from tests import fixtures as test_fixtures

UUID_A = '11111111-2222-4333-8444-555555555555'
UUID_B = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'
UUID_C = '99999999-8888-4777-8666-555555555555'


class StatusTreeTestCase(test_fixtures.CommandTestCase):
    """A command test case with a host's tree to report on.

    ``populate`` writes instances with history, a running import and a
    stash with its hand-over record; ``status`` runs the command.
    """

    def setUp(self):
        super().setUp()
        self.conf = test_fixtures.new_conf(self.config_file)
        self.stash_root = cl_conf.stash_path(self.conf)

    def write(self, uuid, name, data):
        directory = os.path.join(self.instances, uuid)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), 'wb') as f:
            f.write(data)

    def chain(self, uuid):
        return cl_chain.ConsoleLogChain(os.path.join(self.instances, uuid),
                                        conf=self.conf)

    def status(self, *args):
        out = io.StringIO()
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cl_main.main(['--config-file', self.config_file, 'status'] +
                            list(args))
        return code, out.getvalue(), err.getvalue()

    def snapshot(self):
        """Every path under the temp root with its size and mtime."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                found[path] = (st.st_size, st.st_mtime_ns)
        return found

    def populate(self):
        # A: history imported by an earlier migration, plus virtlogd files.
        self.write(UUID_A, 'console.history.000001', b'h' * 300)
        self.write(UUID_A, 'console.log.0', b'b' * 200)
        self.write(UUID_A, 'console.log', b'l' * 50)
        # A: an import in progress, 100 of 150 bytes verified.
        imp = self.chain(UUID_A).begin_import(
            'host1-stash1', [('console.log.0', 100), ('console.log', 50)],
            {'console.log.0': (4096, ['0' * 64]),
             'console.log': (4096, ['0' * 64])})
        imp.write('console.log.0', 0, b'x' * 100)
        imp.checkpoint('console.log.0', 100)
        imp.close()
        # B: migrated away; its chain waits in a stash for the destination.
        self.write(UUID_B, 'console.log.1', b'1' * 70)
        self.write(UUID_B, 'console.log.0', b'0' * 20)
        self.write(UUID_B, 'console.log', b'L' * 10)
        stash = cl_stash.Stash.create(UUID_B, self.chain(UUID_B),
                                      root=self.stash_root, conf=self.conf)
        # The record the migration steps of host1 keep for B.
        steps = migration.ConsoleLogMigration(self.conf, 'host1', None)
        steps.record(UUID_B).save(
            role='source', peer='host2', shared=False, state='stashed',
            stash_ids=[stash.stash_id])
        with steps.lock(UUID_B):
            pass   # an flock on the instances directory: no file left
        return stash
