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

"""Transport, serializer and remote-error rules shared by client and server.

Why a helper: oslo.messaging registers some option groups it reads (in 18:
tracing and metrics) only on the global ``cfg.CONF``; a transport built on
a private ``cfg.ConfigOpts()`` (our command line, tests, two "hosts" in one
process) fails with ``NoSuchOptError`` on the first call unless they are
registered on that ConfigOpts too. And remote exceptions only come back
typed when their module is in ``allowed_remote_exmods`` — otherwise a
caller gets a ``RemoteError`` and cannot tell "unknown stash" from "bug".

Only oslo.messaging's public API is used. ``oslo_messaging.opts.list_opts``
does not list every group a release reads (18.3 leaves tracing and metrics
out); ``oslo_messaging.conffixture.ConfFixture``, which oslo.messaging
documents as the interface for its options, registers on the ConfigOpts it
is given exactly the groups that release reads, whatever they are called
and wherever they live. We use its constructor only (it registers; the
fixture's overrides happen in ``setUp``, which we never call).
"""

import oslo_messaging
from oslo_messaging import conffixture

from nova_consolelog.objects import base as obj_base


# Modules whose exceptions a caller gets back as their own class. The
# dispatcher's module makes "no such method / version" on a peer typed, so
# the client can turn it into PeerUnsupported.
ALLOWED_REMOTE_EXMODS = [
    'nova_consolelog.exception',
    'oslo_messaging.rpc.dispatcher',
]


def register_messaging_opts(conf):
    """Register what oslo.messaging needs on a private ConfigOpts.

    Idempotent; on ``cfg.CONF`` the groups already exist and this is a
    no-op. The control exchange defaults to nova's (``nova``) so that a
    standalone ``nova-consolelog serve``/``pull`` meets endpoints running
    inside nova-compute.
    """
    oslo_messaging.set_transport_defaults('nova')
    conffixture.ConfFixture(conf)


def get_transport(conf, transport_url=None):
    """An RPC transport for ``conf``, ``transport_url`` overriding its URL.

    ``transport_url`` None uses ``[DEFAULT] transport_url`` of ``conf``.
    """
    register_messaging_opts(conf)
    return oslo_messaging.get_rpc_transport(
        conf, url=transport_url,
        allowed_remote_exmods=list(ALLOWED_REMOTE_EXMODS))


class RequestContextSerializer(oslo_messaging.Serializer):
    """oslo.messaging serializer for our versioned objects.

    The context travels as a plain dict (a nova RequestContext is turned
    into its dict); entities go through ``ConsoleLogObjectSerializer``, so
    our objects — bytes fields included, as base64 text — survive the JSON
    encoding of a real broker.
    """

    def __init__(self):
        self._objects = obj_base.ConsoleLogObjectSerializer()

    def serialize_entity(self, ctxt, entity):
        return self._objects.serialize_entity(ctxt, entity)

    def deserialize_entity(self, ctxt, entity):
        return self._objects.deserialize_entity(ctxt, entity)

    def serialize_context(self, ctxt):
        if ctxt is None:
            return {}
        if hasattr(ctxt, 'to_dict'):
            return ctxt.to_dict()
        return dict(ctxt)

    def deserialize_context(self, ctxt):
        return dict(ctxt or {})
