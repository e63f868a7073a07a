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

"""Where the bulk channel finds its broker: URL and TLS, as oslo.messaging.

The bulk channel (``rpc.bulk``) reaches RabbitMQ on kombu connections of
its own, beside oslo.messaging's. It must reach the same broker with the
same credentials and TLS settings the RPC transport uses, read from the
same places (the transport URL, ``[oslo_messaging_rabbit]``) — inside
nova-compute from nova's configuration, not ours. Only ``rabbit://`` has a
broker kombu can reach; for any other driver both answers say "no bulk
channel" and pulls use chunk calls.
"""

import ssl
import urllib.parse

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging
from oslo_utils import strutils

LOG = logging.getLogger(__name__)


def kombu_url(conf, transport_url=None, transport=None):
    """The kombu URL of the RabbitMQ behind an oslo.messaging transport.

    From ``transport_url`` if given; else from the ``[DEFAULT]
    transport_url`` of the configuration ``transport`` was built from
    (nova's own CONF inside nova-compute, where ``conf`` is our private
    one); else of ``conf``. None when the transport is not ``rabbit://``:
    such a driver has no broker for the bulk channel.
    """
    if transport_url is None and transport is not None:
        conf = getattr(transport, 'conf', None) or conf
    try:
        url = oslo_messaging.TransportURL.parse(conf, transport_url)
    except Exception as e:
        # Whatever the reason, the chunk calls still work: never fail here.
        LOG.debug('No bulk channel: transport URL not parsed: %s', e)
        return None
    if url.transport != 'rabbit' or not url.hosts:
        return None
    vhost = urllib.parse.quote(url.virtual_host or '/', safe='')
    urls = []
    for host in url.hosts:
        auth = ''
        if host.username:
            auth = '%s:%s@' % (urllib.parse.quote(host.username, safe=''),
                               urllib.parse.quote(host.password or '',
                                                  safe=''))
        hostname = host.hostname or '127.0.0.1'
        if ':' in hostname:
            hostname = '[%s]' % hostname
        urls.append('amqp://%s%s:%d/%s' % (auth, hostname, host.port or 5672,
                                           vhost))
    return ';'.join(urls)


# [oslo_messaging_rabbit] ssl_version values, as oslo.messaging reads them.
_SSL_VERSIONS = {
    'tlsv1': 'PROTOCOL_TLSv1',
    'tlsv1_1': 'PROTOCOL_TLSv1_1',
    'tlsv1_2': 'PROTOCOL_TLSv1_2',
    'sslv2': 'PROTOCOL_SSLv2',
    'sslv3': 'PROTOCOL_SSLv3',
    'sslv23': 'PROTOCOL_SSLv23',
}


def kombu_ssl(conf, transport_url=None, transport=None):
    """kombu's ``ssl`` argument for the broker ``kombu_url`` names.

    The bulk channel reaches the broker on connections of its own, so it
    takes TLS from where oslo.messaging's rabbit driver takes it:
    ``[oslo_messaging_rabbit] ssl``, ``ssl_version``, ``ssl_key_file``,
    ``ssl_cert_file`` and ``ssl_ca_file`` of the transport's configuration
    (nova's inside nova-compute), each overridden by the same name in the
    transport URL's query. With a CA file the certificate and, for a single
    broker host, its name are verified, as oslo.messaging does.

    :returns: False (no TLS), True (TLS with Python's defaults) or a dict
        of ``ssl.wrap_socket``-style arguments.
    """
    if transport_url is None and transport is not None:
        conf = getattr(transport, 'conf', None) or conf
    try:
        url = oslo_messaging.TransportURL.parse(conf, transport_url)
    except Exception:
        return False
    query = url.query or {}

    def option(name, default):
        if name in query:
            return query[name]
        try:
            return conf['oslo_messaging_rabbit'][name]
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
            return default

    if not strutils.bool_from_string(option('ssl', False)):
        return False
    params = {}
    version = option('ssl_version', '')
    if version:
        protocol = getattr(ssl, _SSL_VERSIONS.get(version.lower(), ''), None)
        if protocol is None:
            LOG.warning('Bulk channel: [oslo_messaging_rabbit] ssl_version '
                        '%r is not known here; using the default', version)
        else:
            params['ssl_version'] = protocol
    for name, key in (('ssl_key_file', 'keyfile'),
                      ('ssl_cert_file', 'certfile')):
        if option(name, ''):
            params[key] = option(name, '')
    if option('ssl_ca_file', ''):
        params['ca_certs'] = option('ssl_ca_file', '')
        params['cert_reqs'] = ssl.CERT_REQUIRED
        params['server_hostname'] = (url.hosts[0].hostname
                                     if len(url.hosts) == 1 else None)
    return params or True
