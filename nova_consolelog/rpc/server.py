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

"""Run the console-log endpoint on ``[consolelog] topic``, server = host.

Inside nova-compute the endpoint shares nova's transport; standalone
(``nova-consolelog serve``, tests) it builds one from a transport URL. The
threading executor is used: eventlet is deprecated in oslo.messaging, and
the endpoint's file reads release the GIL.
"""

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import names
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import broker
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog.rpc import transport as cl_transport

LOG = logging.getLogger(__name__)


class ConsoleLogServer:
    """The console-log RPC server of one host.

    :param conf: ConfigOpts with our options registered.
    :param host: this host's name (the RPC ``server``).
    :param transport: an RPC transport to share (nova's), or None to build
        one from ``transport_url`` / ``[DEFAULT] transport_url``.
    :param endpoint: the endpoint object; a ConsoleLogManager by default.

    The endpoint's bulk channel (RPC 1.2) publishes to the broker of the
    transport, with its TLS settings (see ``broker.kombu_url`` and
    ``broker.kombu_ssl``).
    """

    def __init__(self, conf, host, transport=None, transport_url=None,
                 endpoint=None):
        # '*' or '#' would be AMQP wildcards in a binding: the server
        # would take calls meant for other hosts.
        names.check_host_name(host)
        self.conf = conf
        self.host = host
        self._own_transport = transport is None
        given = transport
        if transport is None:
            transport = cl_transport.get_transport(conf, transport_url)
        self.transport = transport
        self.endpoint = endpoint or cl_manager.ConsoleLogManager(conf, host)
        set_bulk = getattr(self.endpoint, 'set_bulk_channel', None)
        if set_bulk is not None and self.endpoint.bulk_channel[0] is None:
            set_bulk(broker.kombu_url(conf, transport_url, given),
                     broker.kombu_ssl(conf, transport_url, given))
        target = oslo_messaging.Target(topic=conf.consolelog.topic,
                                       server=host)
        # Only methods marked oslo_messaging.expose are dispatched: the
        # default policy would dispatch any public callable attribute.
        self._server = oslo_messaging.get_rpc_server(
            transport, target, [self.endpoint], executor='threading',
            serializer=cl_transport.RequestContextSerializer(),
            access_policy=oslo_messaging.ExplicitRPCAccessPolicy)

    def start(self):
        self._server.start()
        LOG.info('Console-log RPC endpoint of host %s listening on topic %s '
                 '(namespace %s)', self.host, self.conf.consolelog.topic,
                 cl_api.NAMESPACE)
        return self

    def stop(self):
        """Stop taking requests; finish running ones; free our transport."""
        self._server.stop()
        self._server.wait()
        if self._own_transport:
            self.transport.cleanup()
