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

"""The console-log side of two compute hosts on the local RabbitMQ.

``ComputeHost`` is one host's RPC endpoint and ``ConsoleLogMigration``
steps; ``MigrationTestCase`` makes sure RabbitMQ runs and gives a test the
two hosts' sides. The live-migration, reboot and console-read tests use
them; no tests here.
"""

import os
import subprocess
import uuid as uuidlib

from nova_consolelog import conf as cl_conf
from nova_consolelog import migration
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import server as cl_server

from tests.e2e import base
from tests.e2e import hosts
from tests import fixtures as test_fixtures

RABBIT_URL = 'rabbit://guest:guest@127.0.0.1:5672/'
ENSURE_RABBITMQ = os.path.join(
    os.path.dirname(__file__), '..', '..', 'tools',
    'ensure-rabbitmq.sh')


def ensure_rabbitmq():
    """Start RabbitMQ when nothing listens; say how to get it otherwise."""
    result = subprocess.run([ENSURE_RABBITMQ], capture_output=True,
                            text=True)
    if result.returncode:
        raise hosts.HarnessUnavailable(
            'RabbitMQ is needed on 127.0.0.1:5672 (guest/guest): %s'
            % result.stderr.strip())


class ComputeHost:
    """The console-log side of one compute host: RPC endpoint + steps."""

    def __init__(self, libvirt_host, instances_path, topic):
        self.libvirt_host = libvirt_host
        self.name = '%s-%s' % (libvirt_host.name, topic[-8:])
        self.instances_path = instances_path
        self.conf = test_fixtures.new_conf(project='nova-consolelog-e2e')
        self.conf.set_override('instances_path', instances_path,
                               cl_conf.GROUP)
        self.conf.set_override('topic', topic, cl_conf.GROUP)
        self.server = cl_server.ConsoleLogServer(
            self.conf, self.name, transport_url=RABBIT_URL).start()
        self.rpcapi = cl_api.ConsoleLogAPI(self.conf,
                                           transport_url=RABBIT_URL)
        self.steps = migration.ConsoleLogMigration(
            self.conf, self.name, self.rpcapi, instances_path=instances_path)

    def stop(self):
        self.server.stop()
        self.rpcapi.transport.cleanup()

    def stash_age(self, uuid):
        ages = [s.age() for s in self.steps.stashes(uuid)]
        return max(ages) if ages else None


class MigrationTestCase(base.E2ETestCase):
    """Two hosts' console-log sides on RabbitMQ, for guests that move.

    ``compute_hosts`` gives hosts a and b a ``ComputeHost`` each, on a
    topic of their own, on the shared or their private instance path.
    """

    @classmethod
    def setUpClass(cls):
        ensure_rabbitmq()
        super().setUpClass()

    def compute_hosts(self, shared):
        topic = 'nova-consolelog-e2e-%s' % uuidlib.uuid4().hex
        computes = {}
        for host in self.cluster.hosts:
            path = hosts.SHARED_INSTANCES if shared else \
                host.private_instances
            compute = ComputeHost(host, path, topic)
            self.addCleanup(compute.stop)
            computes[host.name] = compute
        return computes['a'], computes['b']
