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

"""More imports than ``max_concurrent_imports`` over a real RabbitMQ.

The source is a ``nova-consolelog serve`` process holding a stash per
instance; this process is the destination and starts every pull at once,
as a drained host's destination would. The tickets on disk (what
``nova-consolelog status`` reads) are sampled all along: never more than
the limit run, the rest wait, and every import is installed byte for
byte and released.
"""

import os
import threading
import time
import uuid

from nova_consolelog import chain as cl_chain
from nova_consolelog.rpc import bulk_receiver
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer
from nova_consolelog.transfer import gate as cl_gate
from nova_consolelog.transfer import pacing

from tests import fixtures as test_fixtures
from tests.functional import pulls

MiB = 1024 * 1024
LIMIT = 3
IMPORTS = 8


class TestImportGate(pulls.PullTestCase):

    def test_never_more_than_the_limit_run_and_all_verify(self):
        self.src = self.start_host('src', chunk_size=MiB, bulk_window=MiB)
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB,
                                   max_concurrent_imports=LIMIT)
        jobs = []
        for n in range(IMPORTS):
            files = {'console.log.0': pulls.random_bytes(2 * MiB, n),
                     'console.log': pulls.text_bytes(MiB // 2, n)}
            instance, stash_id = self._stash(files)
            jobs.append((instance, stash_id, files))
        tickets = cl_gate.host_tickets_dir(conf, 'dst')
        results = {}
        errors = []

        def pull(instance, stash_id):
            try:
                results[instance] = transfer.pull(
                    conf, rpcapi, 'src', instance, stash_id=stash_id,
                    chain=self.dest_chain(conf, instance), local_host='dst')
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=pull, args=job[:2])
                   for job in jobs]
        for t in threads:
            t.start()
        most_running = most_waiting = 0
        while any(t.is_alive() for t in threads):
            states = [t['state'] for t in cl_gate.read_tickets(tickets)]
            most_running = max(most_running, states.count('running'))
            most_waiting = max(most_waiting, states.count('waiting'))
            time.sleep(0.005)
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        self.assertLessEqual(most_running, LIMIT)
        self.assertGreater(most_waiting, 0)
        self.assertEqual(LIMIT, cl_gate.gate_for(conf).most_running)
        for instance, stash_id, files in jobs:
            expected = test_fixtures.chain_bytes(files)
            result = results[instance]
            self.assertEqual(len(expected), result.bytes)
            self.assertTrue(result.released)
            chain = self.dest_chain(conf, instance)
            self.assertEqual(expected, self.history(chain))
            self.assertEqual([], self.partials(chain))
        self.assertEqual([], cl_gate.read_tickets(tickets))

    def _stash(self, files):
        # make_source starts a host per call; one source holds them all.
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(self.src.conf, instance, files)
        stash = cl_stash.Stash.create(
            instance, cl_chain.ConsoleLogChain(directory,
                                               conf=self.src.conf),
            root=self.src.conf.consolelog.stash_path, conf=self.src.conf)
        self.assertTrue(os.path.isdir(stash.path))
        return instance, stash.stash_id


class TestPacedPull(pulls.PullTestCase):

    def test_paced_pull_measures_the_broker_and_verifies(self):
        files = {'console.log.0': pulls.random_bytes(3 * MiB, 11),
                 'console.log': pulls.text_bytes(MiB, 12)}
        instance, stash_id = self.make_source(files, chunk_size=MiB,
                                              bulk_window=MiB)
        # A cap no other test uses: a pacer of its own, 1/4 of the chain
        # per second, so the pull waits for tokens several times.
        conf, rpcapi = self.client(chunk_size=MiB, bulk_window=MiB,
                                   bulk_rate_limit=MiB + 17)
        pacer = pacing.pacer_for(conf)
        waits = []
        real = pacer.take

        def take(nbytes, max_wait=None):
            waits.append(real(nbytes, max_wait))
            return waits[-1]
        pacer.take = take
        self.addCleanup(setattr, pacer, 'take', real)
        result, _chain = self.pull_exact(conf, rpcapi, instance, stash_id,
                                         files)
        self.assertEqual(4 * MiB, result.bulk_bytes)
        self.assertTrue(result.released)
        # Four windows asked for, the later ones after waiting for tokens.
        self.assertEqual(4, len(waits))
        self.assertGreater(sum(waits), 0)
        # The broker's round trip was measured, on a connection of its
        # own, against the real broker.
        self.assertIsNotNone(pacer._baseline)
        self.assertGreater(pacer._baseline, 0.0)
        self.assertLess(pacer._baseline, bulk_receiver.PROBE_TIMEOUT)
