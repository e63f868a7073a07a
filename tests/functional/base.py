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

"""Fixtures of the functional tests: RabbitMQ and console-log hosts.

The tests run against the local RabbitMQ (``tools/ensure-rabbitmq.sh``
starts it when nothing listens on 127.0.0.1:5672; a test fails with that
script's message when it cannot). Each "host" is a separate process running
``nova-consolelog serve`` (or tests/functional/peer.py for an older or
broken release) with its own instances and stash directories in a temp
dir; the test process is the destination that pulls. Every test uses a
topic of its own, so tests never see each other's requests.
"""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid

from oslotest import base as test_base

from nova_consolelog.rpc import api as cl_api

from tests import fixtures as test_fixtures


REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ENSURE_RABBITMQ = os.path.join(REPO, 'tools', 'ensure-rabbitmq.sh')
TRANSPORT_URL = os.environ.get(
    'CONSOLELOG_TEST_TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')
START_TIMEOUT = 60


def ensure_rabbitmq():
    """Start the local RabbitMQ if needed; the reason when it cannot."""
    try:
        proc = subprocess.run([ENSURE_RABBITMQ], capture_output=True,
                              text=True, timeout=90)
    except (OSError, subprocess.TimeoutExpired) as e:
        return '%s failed: %s' % (ENSURE_RABBITMQ, e)
    if proc.returncode != 0:
        return ('RabbitMQ is needed on 127.0.0.1:5672 and %s could not '
                'start it: %s (install: tools/setup-host.sh functional, as '
                'root)' % (ENSURE_RABBITMQ, proc.stderr.strip()))
    return None


class HostProcess:
    """A console-log endpoint in its own process."""

    def __init__(self, root, name, topic, script=None, overrides=None,
                 transport_url=None):
        self.name = name
        self.transport_url = transport_url or TRANSPORT_URL
        self.conf = test_fixtures.make_conf(root, name, topic,
                                            **(overrides or {}))
        group = self.conf.consolelog
        self.config_file = os.path.join(root, name, 'consolelog.conf')
        with open(self.config_file, 'w') as f:
            f.write('[consolelog]\n')
            for opt in ('instances_path', 'stash_path', 'topic',
                        'chunk_size', 'bulk_transfer', 'bulk_window'):
                f.write('%s = %s\n' % (opt, group[opt]))
        self.log = os.path.join(root, name, 'serve.log')
        self.script = script
        self.proc = None

    def command(self):
        if self.script:
            return [sys.executable, '-m',
                    'tests.functional.peer', self.script,
                    '--config-file', self.config_file, '--host', self.name,
                    '--transport-url', self.transport_url]
        return [sys.executable, '-m', 'nova_consolelog.cmd.main',
                '--config-file', self.config_file, 'serve', '--host',
                self.name, '--transport-url', self.transport_url]

    def start(self):
        log = open(self.log, 'ab')
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=log, cwd=REPO)
        log.close()
        ready = threading.Event()
        lines = []

        def read():
            for line in self.proc.stdout:
                lines.append(line)
                if line.startswith(b'serving'):
                    ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT):
            self.kill()
            with open(self.log, 'rb') as f:
                tail = f.read()[-3000:].decode('utf-8', 'replace')
            raise AssertionError('host %s did not start: %s %s' % (
                self.name, lines, tail))
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


class FunctionalTestCase(test_base.BaseTestCase):
    """A temp dir, a topic of its own and helpers to start hosts."""

    def setUp(self):
        super().setUp()
        problem = ensure_rabbitmq()
        if problem:
            self.fail(problem)
        self.root = tempfile.mkdtemp(prefix='consolelog-func-')
        self.addCleanup(self._rmtree, self.root)
        self.topic = 'consolelog-functional-%s' % uuid.uuid4().hex

    @staticmethod
    def _rmtree(path):
        subprocess.run(['rm', '-rf', path], check=False)

    def start_host(self, name, script=None, transport_url=None,
                   **overrides):
        host = HostProcess(self.root, name, self.topic, script, overrides,
                           transport_url)
        self.addCleanup(host.stop)
        return host.start()

    def client(self, name='dst', transport_url=None, **overrides):
        """ConfigOpts and a client of host name (this process)."""
        conf = test_fixtures.make_conf(self.root, name, self.topic,
                                       **overrides)
        rpcapi = cl_api.ConsoleLogAPI(
            conf, transport_url=transport_url or TRANSPORT_URL)
        self.addCleanup(rpcapi.transport.cleanup)
        return conf, rpcapi
