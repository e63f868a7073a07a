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

"""What the crash tests share: a source and a destination that die.

``CrashSource`` (a serve-like process) and ``Destination`` (pulls in
processes of their own, tests/functional/crashdriver.py) SIGKILL
themselves at a step boundary of the hand-over; ``CrashTestCase`` sets up
a source with one stash and checks the invariant on both hosts' files
after a crash and after the retry. Used by the crash, abandoned-import
and evacuation tests; no tests here.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

from nova_consolelog import chain as cl_chain
from nova_consolelog.handover import record as cl_record
from nova_consolelog import history_import
from nova_consolelog import import_ledger
from nova_consolelog import migration
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import base
from tests.functional import pulls

KiB = 1024
MiB = 1024 * KiB
DRIVER = 'tests.functional.crashdriver'
RUN_TIMEOUT = 120
# Options the destination process reads from its configuration file.
DEST_OPTS = ('instances_path', 'stash_path', 'topic', 'chunk_size',
             'bulk_transfer', 'bulk_window', 'rpc_timeout', 'pull_timeout',
             'pull_retries')


def digest(data):
    """Length and sha256: what a failure shows instead of MiBs."""
    return len(data), hashlib.sha256(data).hexdigest()


def digests(files):
    if files is None:
        return None
    return {name: digest(data) for name, data in files.items()}


class CrashSource(base.HostProcess):
    """A serve-like source that SIGKILLs itself at ``point``."""

    point = None

    def command(self):
        command = [sys.executable, '-m', DRIVER, 'source',
                   '--config-file', self.config_file, '--host', self.name,
                   '--transport-url', self.transport_url]
        if self.point:
            command += ['--point', self.point]
        return command

    def wait_dead(self, timeout=60):
        return self.proc.wait(timeout)


class Destination:
    """The destination's configuration and its pulls as processes."""

    def __init__(self, test, conf):
        self.test = test
        self.conf = conf
        self.config_file = os.path.join(test.root, 'dst', 'dest.conf')
        with open(self.config_file, 'w') as f:
            f.write('[consolelog]\n')
            for opt in DEST_OPTS:
                f.write('%s = %s\n' % (opt, conf.consolelog[opt]))
        self.log = os.path.join(test.root, 'dst', 'driver.log')

    def start(self, instance, stash_id, point=None, via='pull',
              pause_at=None):
        command = [sys.executable, '-m', DRIVER, 'dest',
                   '--config-file', self.config_file, '--host', 'dst',
                   '--transport-url', base.TRANSPORT_URL,
                   '--instance', instance, '--via', via]
        if stash_id is not None:
            command += ['--stash-id', stash_id]
        if point:
            command += ['--point', point]
        if pause_at:
            command += ['--pause-at', pause_at]
        with open(self.log, 'ab') as log:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                    stderr=log, cwd=base.REPO)
        self.test.addCleanup(self._reap, proc)
        return proc

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()

    def tail(self):
        with open(self.log, 'rb') as f:
            return f.read()[-3000:].decode('utf-8', 'replace')

    def crash(self, instance, stash_id, point, via='pull'):
        """Run a pull that dies at ``point``; fail if it did not."""
        proc = self.start(instance, stash_id, point=point, via=via)
        out, _err = proc.communicate(timeout=RUN_TIMEOUT)
        self.test.assertEqual(
            -signal.SIGKILL, proc.returncode,
            'the pull did not die at %s: %s %s' % (point, out, self.tail()))

    def finish(self, proc):
        """Wait for a pull process; its outcome (``result`` line)."""
        out, _err = proc.communicate(timeout=RUN_TIMEOUT)
        self.test.assertEqual(0, proc.returncode, '%s %s' % (
            out, self.tail()))
        return self.outcome(out.splitlines())

    @staticmethod
    def outcome(lines):
        for line in lines:
            if line.startswith(b'result '):
                return json.loads(line[len(b'result '):])
        raise AssertionError('no result in %r' % lines)

    @staticmethod
    def wait_stopped(proc, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open('/proc/%d/stat' % proc.pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
            if state in ('T', 't'):
                return
            time.sleep(0.01)
        raise AssertionError('%s did not stop' % (proc.args,))

    def run(self, instance, stash_id, via='pull'):
        return self.finish(self.start(instance, stash_id, via=via))

    @staticmethod
    def wait_line(proc, prefix):
        """Read ``proc``'s output up to a line starting with ``prefix``.

        A ``paused`` line is printed just before the process stops itself:
        wait until it has, or a SIGCONT sent now would be lost.
        """
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(prefix):
                if prefix == b'paused':
                    Destination.wait_stopped(proc)
                return lines
        raise AssertionError('%s never printed %r: %r' % (
            proc.args, prefix, lines))


class CrashTestCase(pulls.PullTestCase):
    """A source with one stash and a destination; checks on their files."""

    FILES = {'console.log.2': pulls.random_bytes(768 * KiB, 21),
             'console.log.1': pulls.random_bytes(MiB + 7, 22),
             'console.log.0': pulls.text_bytes(768 * KiB, 23),
             'console.log': pulls.random_bytes(512 * KiB, 24)}
    SOURCE = dict(chunk_size=256 * KiB, bulk_window=MiB)

    def setUp(self):
        super().setUp()
        self.expected = test_fixtures.chain_bytes(self.FILES)

    def start_source(self, point=None, **overrides):
        settings = dict(self.SOURCE)
        settings.update(overrides)
        host = CrashSource(self.root, 'src', self.topic, overrides=settings)
        host.point = point
        self.addCleanup(host.stop)
        self.src = host.start()
        return host

    def setup_hosts(self, source_point=None, **dest):
        """Source (a stash of FILES), destination conf, client, chain."""
        src = self.start_source(source_point)
        self.instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(src.conf, self.instance,
                                              self.FILES)
        self.stash_id = cl_stash.Stash.create(
            self.instance, cl_chain.ConsoleLogChain(directory, conf=src.conf),
            root=src.conf.consolelog.stash_path, conf=src.conf).stash_id
        settings = dict(chunk_size=256 * KiB, bulk_window=MiB,
                        rpc_timeout=3, pull_retries=1, pull_timeout=60)
        settings.update(dest)
        self.conf, self.rpcapi = self.client('dst', **settings)
        self.chain = self.dest_chain(self.conf, self.instance)
        self.dest = Destination(self, self.conf)
        self.mig = migration.ConsoleLogMigration(self.conf, 'dst',
                                                 self.rpcapi)

    # -- the files ---------------------------------------------------------

    def stash_files(self):
        """``{name: bytes}`` of the source's stash; None when it is gone."""
        path = os.path.join(self.src.conf.consolelog.stash_path,
                            self.instance, self.stash_id)
        if not os.path.isdir(path):
            return None
        files = {}
        for name in os.listdir(path):
            if name.startswith('console.'):
                with open(os.path.join(path, name), 'rb') as f:
                    files[name] = f.read()
        return files

    def leftovers(self):
        """Staging files and sidecars in the destination's directory."""
        return sorted(n for n in os.listdir(self.chain.directory)
                      if n.startswith(history_import.PARTIAL_PREFIX))

    def ledger(self):
        return import_ledger.Ledger(self.chain).load()

    def check_after_crash(self):
        """Once and exact, or absent with the stash intact. Which one."""
        history = self.history(self.chain)
        stash = self.stash_files()
        if history:
            self.assertEqual(digest(self.expected), digest(history),
                             'the history is not the chain exactly once')
            if stash is not None:
                self.assertEqual(digests(self.FILES), digests(stash),
                                 'the stash is damaged')
            return 'installed' if stash is not None else 'released'
        self.assertEqual(digests(self.FILES), digests(stash),
                         'the stash is damaged or gone while the history '
                         'does not hold it')
        return 'absent'

    def check_done(self):
        """After the retry: once, exact, released, nothing left over."""
        self.assertEqual(digest(self.expected),
                         digest(self.history(self.chain)),
                         'the history is not the chain exactly once')
        self.assertEqual(1, len(self.chain.history()))
        self.assertIsNone(self.stash_files(), 'the stash was not released')
        self.assertEqual([], self.leftovers())
        entry = self.ledger().get(transfer.import_id_for('src',
                                                         self.stash_id))
        self.assertIsNotNone(entry, 'the ledger does not name the import')
        self.assertEqual(self.chain.history()[0].name, entry['name'])

    # -- retries -----------------------------------------------------------

    def retry(self, how):
        """The normal retry path after a crash of the destination."""
        if how == 'pull':
            result = transfer.pull(self.conf, self.rpcapi, 'src',
                                   self.instance, stash_id=self.stash_id,
                                   chain=self.chain, local_host='dst')
            self.assertTrue(result.released)
            return result
        if how == 'process':
            outcome = self.dest.run(self.instance, self.stash_id)
            self.assertTrue(outcome.get('released'), outcome)
            return outcome
        # nova-compute restarted: its periodic task finds the record.
        record = self.mig.record(self.instance)
        data = record.load()
        if data is None:
            record.save(role=cl_record.Role.DESTINATION, peer='src',
                        shared=False, state=how)
        else:
            self.assertEqual(how, data.get('state'))
        self.mig.retry_pending()
        self.assertIsNone(record.load(), 'the hand-over record is left')

    def crash_and_retry(self, point, retry, via='pull'):
        self.dest.crash(self.instance, self.stash_id, point, via=via)
        state = self.check_after_crash()
        self.retry(retry)
        self.check_done()
        return state
