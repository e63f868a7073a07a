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

"""``nova-consolelog serve``: refuses what it cannot serve safely."""

import argparse
import io
import os
import threading

import fixtures

from nova_consolelog.cmd import main as cl_main
from nova_consolelog.cmd import serve as cl_serve
from nova_consolelog import exception

from tests import fixtures as test_fixtures


class ServeCommandTest(test_fixtures.CommandTestCase):

    def setUp(self):
        super().setUp()
        self.started = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.server.ConsoleLogServer.start',
            lambda server: self.started.append(server)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_consolelog.rpc.server.ConsoleLogServer.stop',
            lambda server: None))

    def serve(self, *args, transport='fake://'):
        out = io.StringIO()
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cl_main.main(['--config-file', self.config_file, 'serve',
                             '--transport-url', transport] + list(args))
        return code, out.getvalue(), err.getvalue()

    def assertRefused(self, args, expect, transport='fake://'):
        code, out, err = self.serve(*args, transport=transport)
        self.assertEqual(cl_main.EXIT_USAGE, code, (args, err))
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertNotIn('Traceback', err)
        self.assertIn(expect, err)
        self.assertEqual([], self.started)
        self.assertNotIn('serving', out)

    def test_wildcard_and_bad_host_names(self):
        for bad in ('*', '#', 'compute.*', 'a b', 'host\n', 'a\x01b',
                    'a..b', '', 'x' * 300):
            self.assertRefused(['--host', bad], 'host name')

    def test_missing_instances_path(self):
        missing = os.path.join(self.root, 'nope')
        self.configure(missing)
        self.assertRefused(['--host', 'compute1'], 'does not exist')
        self.assertFalse(os.path.exists(missing))

    def test_bad_transport_url(self):
        self.assertRefused(['--host', 'compute1'], 'transport URL',
                           transport='bogus://x')

    def test_good_host_serves(self):
        conf = test_fixtures.new_conf(self.config_file)
        stop = threading.Event()
        stop.set()
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        args = argparse.Namespace(host='compute-1.example.org',
                                  transport_url='fake://')
        self.assertEqual(0, cl_serve.serve(args, conf, stop_event=stop))
        self.assertEqual(1, len(self.started))
        self.assertIn('serving compute-1.example.org', out.getvalue())

    def test_check_used_directly(self):
        conf = test_fixtures.new_conf(self.config_file)
        args = argparse.Namespace(host='*', transport_url='fake://')
        self.assertRaises(exception.InvalidInput, cl_serve.serve, args,
                          conf, stop_event=threading.Event())
