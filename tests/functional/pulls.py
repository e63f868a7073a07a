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

"""What the pull tests share: a source host with a stash, a destination.

``PullTestCase`` starts a ``nova-consolelog serve`` process as the source
and pulls into this process as the destination; the byte generators and
``BrokerRestart`` (RabbitMQ restarted under a pull) are used by the pull,
bulk, RPC, crash, gate, hostile-peer and evacuation tests alike. No tests
here: the test modules import this one, never each other.
"""

import os
import random
import subprocess
import threading
import time
from unittest import mock
import uuid

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import history_import
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import base

MiB = 1024 * 1024


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def text_bytes(n, seed=0):
    lines = []
    size = 0
    i = 0
    while size < n:
        line = b'[%10.6f] seed %d line %d: systemd[1]: Started unit.\r\n' % (
            i / 1000.0, seed, i)
        lines.append(line)
        size += len(line)
        i += 1
    return b''.join(lines)[:n]


# A chain of 16 MiB in four files: long enough a pull for a fault to hit it
# mid-way.
FAULT_FILES = {'console.log.2': random_bytes(4 * MiB, 11),
               'console.log.1': random_bytes(4 * MiB, 12),
               'console.log.0': random_bytes(4 * MiB, 13),
               'console.log': random_bytes(4 * MiB, 14)}


class BrokerRestart:
    """Restart RabbitMQ under a pull once it has moved ``at`` bytes.

    Use ``progress`` as the pull's progress callback. The source is paused
    while the broker is away, so that requests are in flight across the
    restart however fast the source and the broker are; the pull goes on
    only once the broker is away, so the rest of it has to live through
    the restart. ``done_when_back`` is what the pull had when the broker
    was back: less than all proves the rest went through the new broker.
    """

    def __init__(self, test, source, at):
        self.source = source
        self.at = at
        self.done = 0
        self.done_when_back = None
        self.stopped = threading.Event()
        self.restarted = threading.Event()
        self.thread = None
        test.addCleanup(subprocess.run, ['rabbitmqctl', 'start_app'],
                        capture_output=True, check=False)

    def progress(self, done, total):
        self.done = done
        if done >= self.at and self.thread is None:
            self.thread = threading.Thread(target=self._bounce)
            self.thread.start()
            self.stopped.wait(60)

    def _bounce(self):
        self.source.pause()
        subprocess.run(['rabbitmqctl', 'stop_app'], capture_output=True,
                       check=True)
        self.stopped.set()
        time.sleep(1)
        subprocess.run(['rabbitmqctl', 'start_app'], capture_output=True,
                       check=True)
        self.done_when_back = self.done
        self.source.resume()
        self.restarted.set()

    def join(self):
        self.thread.join(60)


class PullTestCase(base.FunctionalTestCase):

    def make_source(self, files, host='src', stash=True, **overrides):
        self.src = self.start_host(host, **overrides)
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(self.src.conf, instance, files)
        stash_id = None
        if stash:
            stash_id = cl_stash.Stash.create(
                instance, cl_chain.ConsoleLogChain(directory,
                                                   conf=self.src.conf),
                root=self.src.conf.consolelog.stash_path,
                conf=self.src.conf).stash_id
        return instance, stash_id

    def dest_chain(self, conf, instance):
        chain = cl_chain.ConsoleLogChain.for_instance(instance, conf=conf)
        os.makedirs(chain.directory, exist_ok=True)
        return chain

    def pull_exact(self, conf, api, instance, stash_id, files, **kwargs):
        """Pull into a new destination chain; assert it is byte-exact.

        Returns the PullResult and the chain.
        """
        chain = self.dest_chain(conf, instance)
        result = transfer.pull(conf, api, 'src', instance, stash_id=stash_id,
                               chain=chain, **kwargs)
        self.assertEqual(test_fixtures.chain_bytes(files), self.history(chain))
        return result, chain

    def pull_killed_at(self, conf, rpcapi, instance, stash_id, chain, at):
        """A pull whose source is killed once ``at`` bytes are in.

        And once at least one whole file is recorded as written: progress
        is recorded durably at the end of each file (and every
        ``CHECKPOINT_BYTES``), and with two windows in flight ``at`` bytes
        may lie in two unfinished files, which a resumed pull fetches
        again. The pull fails and installs nothing; the source stays down
        (the caller restarts it). Returns the names of the files recorded
        whole.
        """
        whole = []
        checkpoint = history_import.Import.checkpoint

        def recorded(imp, name, upto):
            checkpoint(imp, name, upto)
            if upto == imp.progress.range(name)[1]:
                whole.append(name)

        def kill(done, total):
            if done >= at and whole:
                self.src.kill()

        with mock.patch.object(history_import.Import, 'checkpoint',
                               recorded):
            self.assertRaises(exception.TransferFailed, transfer.pull, conf,
                              rpcapi, 'src', instance, stash_id=stash_id,
                              chain=chain, progress=kill)
        self.assertEqual(b'', self.history(chain))
        self.assertNotEqual([], whole)
        return whole

    def history(self, chain):
        return b''.join(
            open(os.path.join(chain.directory, f.name), 'rb').read()
            for f in chain.history())

    def partials(self, chain):
        return [n for n in os.listdir(chain.directory)
                if n.startswith(cl_chain.PARTIAL_PREFIX)]
