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

"""rpc.broker: the bulk channel finds the RPC transport's broker and TLS."""

import ssl

import fixtures
import oslo_messaging
from oslotest import base as test_base

from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import broker
from nova_consolelog.rpc import server as cl_server

from tests import fixtures as test_fixtures


class TestKombuURL(test_base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = test_fixtures.new_conf()

    def test_rabbit(self):
        self.assertEqual(
            'amqp://guest:gu%40est@127.0.0.1:5672/%2F',
            broker.kombu_url(self.conf,
                             'rabbit://guest:gu%40est@127.0.0.1:5672/'))

    def test_hosts_and_virtual_host(self):
        self.assertEqual(
            'amqp://u:p@a:5672/nova;amqp://u:p@[fd00::1]:5673/nova',
            broker.kombu_url(self.conf,
                             'rabbit://u:p@a,u:p@[fd00::1]:5673/nova'))

    def test_other_drivers_have_none(self):
        for url in ('fake://', 'kafka://k:9092/', 'not a url'):
            self.assertIsNone(broker.kombu_url(self.conf, url))

    def test_url_of_a_shared_transport(self):
        # Inside nova-compute our conf is private; nova's transport carries
        # nova's CONF with its transport_url.
        nova_conf = test_fixtures.new_conf()
        self.assertIsNone(broker.kombu_url(nova_conf))
        nova_conf.set_override('transport_url', 'rabbit://n:5672/nova')

        class Transport:
            conf = nova_conf
        self.assertEqual('amqp://n:5672/nova',
                         broker.kombu_url(self.conf, transport=Transport()))
        self.assertEqual('amqp://o:5672/%2F',
                         broker.kombu_url(self.conf, 'rabbit://o:5672/',
                                          Transport()))

    def test_default_transport_url(self):
        # Parsing registers oslo.messaging's [DEFAULT] transport_url.
        self.assertIsNone(broker.kombu_url(self.conf))
        self.conf.set_override('transport_url', 'rabbit://h:5672/')
        self.assertEqual('amqp://h:5672/%2F', broker.kombu_url(self.conf))


class TestKombuSSL(test_base.BaseTestCase):
    """TLS for the bulk channel, from where oslo.messaging takes it."""

    def setUp(self):
        super().setUp()
        self.conf = test_fixtures.make_conf(self.useFixture(
            fixtures.TempDir()).path, 'h', 'topic')
        # Building a rabbit transport registers [oslo_messaging_rabbit] on
        # its configuration, as in nova-compute; it does not connect.
        # (Parsing registers [DEFAULT] transport_url.)
        oslo_messaging.TransportURL.parse(self.conf)
        self.conf.set_override('transport_url',
                               'rabbit://u:p@broker.example.org:5671/')
        self.transport = oslo_messaging.get_rpc_transport(self.conf)
        self.addCleanup(self.transport.cleanup)

    def test_off_by_default(self):
        self.assertIs(False, broker.kombu_ssl(self.conf,
                                              transport=self.transport))
        self.assertIs(False, broker.kombu_ssl(self.conf, 'fake://'))

    def test_from_oslo_messaging_rabbit(self):
        for name, value in (('ssl', True), ('ssl_ca_file', '/etc/ca.pem'),
                            ('ssl_cert_file', '/etc/c.pem'),
                            ('ssl_key_file', '/etc/k.pem'),
                            ('ssl_version', 'TLSv1_2')):
            self.conf.set_override(name, value, 'oslo_messaging_rabbit')
        self.assertEqual(
            {'ca_certs': '/etc/ca.pem', 'cert_reqs': ssl.CERT_REQUIRED,
             'certfile': '/etc/c.pem', 'keyfile': '/etc/k.pem',
             'server_hostname': 'broker.example.org',
             'ssl_version': ssl.PROTOCOL_TLSv1_2},
            broker.kombu_ssl(self.conf, 'rabbit://u:p@broker.example.org/'))

    def test_transport_url_query_wins(self):
        self.conf.set_override('ssl', False, 'oslo_messaging_rabbit')
        self.assertEqual(
            {'ca_certs': '/q/ca.pem', 'cert_reqs': ssl.CERT_REQUIRED,
             'server_hostname': None},
            broker.kombu_ssl(self.conf, 'rabbit://a:5671,b:5671/'
                             '?ssl=1&ssl_ca_file=/q/ca.pem'))
        self.conf.set_override('ssl', True, 'oslo_messaging_rabbit')
        self.assertIs(False, broker.kombu_ssl(self.conf,
                                              'rabbit://a:5671/?ssl=0'))

    def test_without_a_ca_python_defaults(self):
        self.conf.set_override('ssl', True, 'oslo_messaging_rabbit')
        self.assertIs(True, broker.kombu_ssl(self.conf,
                                             transport=self.transport))

    def test_client_and_endpoint_take_it(self):
        self.conf.set_override('ssl', True, 'oslo_messaging_rabbit')
        self.conf.set_override('ssl_ca_file', '/etc/ca.pem',
                               'oslo_messaging_rabbit')
        rpcapi = cl_api.ConsoleLogAPI(self.conf, transport=self.transport)
        self.assertEqual('amqp://u:p@broker.example.org:5671/%2F',
                         rpcapi.bulk_url)
        self.assertEqual('/etc/ca.pem', rpcapi.bulk_ssl['ca_certs'])
        server = cl_server.ConsoleLogServer(self.conf, 'h',
                                            transport=self.transport)
        self.assertEqual(rpcapi.bulk_ssl, server.endpoint.bulk_channel[1])
