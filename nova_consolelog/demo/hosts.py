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

"""The demo's compute hosts: configuration, RPC endpoint, client, steps.

Each host has its own configuration, instance directory and stash root
under the demo's directory, and serves its console-log endpoint in this
process (on ``fake://``, whose exchanges every transport of a process
shares, or on a real broker).
"""

import os
import socket

from oslo_config import cfg
import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import migration as cl_migration
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import server as cl_server
from nova_consolelog.rpc import transport as cl_transport

DEFAULT_TRANSPORT_URL = 'fake://'


def _check_reachable(transport_url, timeout=3.0):
    """Fail fast when a broker does not answer.

    oslo.messaging would otherwise retry its connection for ever and the
    demo would hang without a word.
    """
    url = oslo_messaging.TransportURL.parse(cfg.CONF, transport_url)
    for host in url.hosts:
        if not host.hostname:
            continue
        try:
            socket.create_connection((host.hostname, host.port or 5672),
                                     timeout).close()
        except OSError as e:
            raise exception.InvalidInput(
                reason='no message broker answers at %s:%s (%s); for the '
                       'local RabbitMQ run tools/ensure-rabbitmq.sh' % (
                           host.hostname, host.port or 5672, e))


class DemoHost:
    """One compute host: its configuration, endpoint, client and steps."""

    def __init__(self, name, root, transport_url, chunk_size=None,
                 instances_path=None):
        self.name = name
        self.instances_path = instances_path or os.path.join(
            root, name, 'instances')
        os.makedirs(self.instances_path, exist_ok=True)
        self.conf = cfg.ConfigOpts()
        cl_conf.register_opts(self.conf)
        self.conf(args=[], project='nova-consolelog-demo',
                  default_config_files=[])
        self.conf.set_override('instances_path', self.instances_path,
                               group=cl_conf.GROUP)
        if chunk_size:
            self.conf.set_override('chunk_size', chunk_size,
                                   group=cl_conf.GROUP)
        try:
            self.transport = cl_transport.get_transport(self.conf,
                                                        transport_url)
        except oslo_messaging.MessagingException as e:
            raise exception.InvalidInput(
                reason='cannot use transport URL %r: %s' % (
                    transport_url, e))
        _check_reachable(transport_url)
        self.server = None
        try:
            self.server = cl_server.ConsoleLogServer(
                self.conf, name, transport=self.transport).start()
            self.rpcapi = cl_api.ConsoleLogAPI(self.conf,
                                               transport=self.transport)
        except Exception:
            self.stop()
            raise
        self.steps = cl_migration.ConsoleLogMigration(
            self.conf, name, self.rpcapi,
            instances_path=self.instances_path)

    @property
    def stash_root(self):
        return cl_conf.stash_path(self.conf)

    def instance_dir(self, instance_uuid):
        return os.path.join(self.instances_path, instance_uuid)

    def chain(self, instance_uuid):
        return cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                     conf=self.conf)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.transport is not None:
            self.transport.cleanup()
            self.transport = None
