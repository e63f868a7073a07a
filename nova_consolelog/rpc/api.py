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

"""Client side of the console-log RPC API.

A destination host calls the source host's endpoint (rpc.manager) on the
topic ``[consolelog] topic`` with ``server=<source host>``. Any answer that
means "the peer does not offer this" — a version above our cap, a method or
version the peer's dispatcher does not know — becomes
``exception.PeerUnsupported``, which the migration step turns into a clean
"console log not migrated" warning instead of a failed migration.

So does a host where nothing listens on our topic at all: a source whose
nova-compute runs nova's own driver. Without a listener a call would wait
the whole ``rpc_timeout`` (60 s) inside nova's
``post_live_migration_at_destination``; our calls are therefore published
with RabbitMQ's mandatory flag (``TransportOptions(at_least_once=True)``),
so the broker returns an unroutable request at once
(``MessageUndeliverable``). A listener that is only reconnecting (after a
broker restart) is given ``UNDELIVERABLE_RETRIES`` short retries first.
Drivers without the flag (``fake://``) ignore it.
"""

import functools
import re
import time

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import exception
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import broker
from nova_consolelog.rpc import transport as cl_transport

LOG = logging.getLogger(__name__)

NAMESPACE = 'consolelog'

_VERSION_RE = re.compile(r'[0-9]{1,3}\.[0-9]{1,3}')

# A request nobody could receive is retried this often, a second apart,
# before the host counts as one without our endpoint.
UNDELIVERABLE_RETRIES = 5
UNDELIVERABLE_INTERVAL = 1.0

# The errors by which a peer (or our own version cap) says it does not
# offer a call; RemoteError carries the dispatcher's class name when the
# dispatcher's module is not importable on our side.
_UNSUPPORTED = (oslo_messaging.UnsupportedVersion,
                oslo_messaging.NoSuchMethod,
                oslo_messaging.RPCVersionCapError)
_UNSUPPORTED_NAMES = ('UnsupportedVersion', 'NoSuchMethod',
                      'RPCVersionCapError')


def _lacks_call(error, only=None):
    """The name of what ``error`` says the peer lacks, or None.

    The one test of "the peer (or our cap) does not offer this call":
    ``error`` is one of oslo.messaging's classes for it, or a RemoteError
    carrying one of their names (the dispatcher's module is not importable
    on our side). ``only`` narrows it to those class names.
    """
    names = _UNSUPPORTED_NAMES if only is None else only
    if isinstance(error, _UNSUPPORTED):
        name = next(c.__name__ for c in _UNSUPPORTED if isinstance(error, c))
    elif isinstance(error, oslo_messaging.RemoteError):
        name = error.exc_type
    else:
        return None
    return name if name in names else None


def _peer_support(what, first_contact=False):
    """Turn "peer lacks this call" into PeerUnsupported(host, what).

    A request nobody could receive (no endpoint on ``host``) is
    PeerUnsupported too for a ``first_contact`` call (the one that decides
    whether a hand-over happens at all); in the middle of a pull it is a
    delivery failure, which the pull retries like a timeout.
    """
    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(self, ctxt, host, *args, **kwargs):
            try:
                return _delivered(fn, self, ctxt, host, *args, **kwargs)
            except oslo_messaging.MessageUndeliverable as e:
                if not first_contact:
                    raise oslo_messaging.MessageDeliveryFailure(
                        'nothing listens for console-log calls on %s'
                        % host) from e
                raise exception.PeerUnsupported(
                    host=host, what='%s (nothing listens for console-log '
                    'calls there)' % what) from e
            except (_UNSUPPORTED + (oslo_messaging.RemoteError,)) as e:
                lacking = _lacks_call(e)
                if lacking is not None:
                    # A local class says more than its name (the version).
                    detail = lacking if isinstance(
                        e, oslo_messaging.RemoteError) else e
                    raise exception.PeerUnsupported(
                        host=host, what='%s (%s)' % (what, detail)) from e
                typed = _typed_error(e)
                if typed is None:
                    raise
                raise typed from e
        return wrapper
    return decorator


def _delivered(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, retried while the broker cannot route it."""
    for attempt in range(UNDELIVERABLE_RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except oslo_messaging.MessageUndeliverable:
            if attempt == UNDELIVERABLE_RETRIES:
                raise
            time.sleep(UNDELIVERABLE_INTERVAL)


def _typed_error(remote):
    """Our error class for a RemoteError, or None.

    A transport we did not build (nova's, when embedded in nova-compute)
    does not list our exceptions module in its ``allowed_remote_exmods``,
    so our typed errors arrive as RemoteError carrying only the class name.
    The endpoint raises only our errors on purpose, so the name is enough
    to give the caller the class back.
    """
    cls = getattr(exception, remote.exc_type or '', None)
    if isinstance(cls, type) and issubclass(cls, exception.ConsoleLogError):
        return cls(remote.value)
    return None


class ConsoleLogAPI:
    """Client side of the console-log RPC API.

    API version history:

    * 1.0 - Initial version: describe_console_log, list_console_log_stashes,
            read_console_log_chunk, release_console_log_stash
    * 1.1 - read_console_log_chunk takes ``compression``; its answer is a
            ConsoleLogChunk 1.1, zlib-compressed when that shrinks it
    * 1.2 - send_console_log_range: the source publishes a window of a
            file as binary AMQP messages to the caller's bulk queue on the
            same RabbitMQ (rpc.bulk) and answers a small summary
    * 1.3 - open_console_log_transfer: hands a stash (or a pin of the live
            chain) to one puller, with a hash list per file (ConsoleLogSet
            and ConsoleLogFile 1.1) and a release token;
            send_console_log_range takes ``request_token``, copied into
            every bulk message; release_console_log_stash takes
            ``transfer_token`` and ``puller_host`` and refuses releases
            without them

    1.0 to 1.2 were steps of development and never part of a release; we
    keep them (rather than folding everything into a new 1.0) because
    folding would change the wire under hosts that run those builds, and
    the negotiation down to 1.0 stays tested against them.

    ``VERSION_ALIASES``, as in nova: ``[upgrade_levels] consolelog`` takes
    a version or the name of a release, meaning "the newest version that
    release speaks". During a rolling upgrade an operator caps the client
    at the release the oldest compute host runs, without having to know
    our version numbers. nova-consolelog is released with nova and named
    after the nova major version it is built for (``nova-34``: built and
    tested against nova 34.0.0). Only releases get a name: there is none
    for 1.0 to 1.2, which a cap reaches by number.
    """

    VERSION = '1.3'

    VERSION_ALIASES = {
        'nova-34': '1.3',
    }

    def __init__(self, conf, transport=None, transport_url=None):
        """Build the client.

        Uses ``transport`` (for example nova's), or one built from
        ``transport_url`` / ``conf``'s ``[DEFAULT] transport_url``. The
        bulk channel (``bulk_url``) uses the broker of that transport and
        its TLS settings (``bulk_ssl``; see ``broker.kombu_url`` and
        ``broker.kombu_ssl``); None when it is not ``rabbit://`` or
        ``[consolelog] bulk_transfer`` is off.
        """
        self.conf = conf
        given = transport
        if transport is None:
            transport = cl_transport.get_transport(conf, transport_url)
        self.transport = transport
        self.bulk_url = None
        self.bulk_ssl = False
        if conf.consolelog.bulk_transfer:
            self.bulk_url = broker.kombu_url(conf, transport_url, given)
            self.bulk_ssl = broker.kombu_ssl(conf, transport_url, given)
        self.version_cap = self.resolve_cap(conf.upgrade_levels.consolelog)
        target = oslo_messaging.Target(
            topic=conf.consolelog.topic, namespace=NAMESPACE,
            version='1.0')
        self.client = oslo_messaging.get_rpc_client(
            transport, target, version_cap=self.version_cap,
            serializer=cl_transport.RequestContextSerializer(),
            timeout=conf.consolelog.rpc_timeout,
            transport_options=oslo_messaging.TransportOptions(
                at_least_once=True))
        # Our pulls must leave most of the transport's connection pool to
        # its owner (nova's, inside nova-compute): warn if they might not.
        from nova_consolelog.transfer import gate
        gate.check_pool(conf, getattr(transport, 'conf', None))
        # Hosts that answered UnsupportedVersion to a 1.1 call.
        self._only_1_0 = set()
        # Hosts that do not speak 1.2 (no bulk channel).
        self._pre_1_2 = set()

    @classmethod
    def resolve_cap(cls, cap):
        """The version ``[upgrade_levels] consolelog`` = ``cap`` means.

        None (no cap) stays None. A release name becomes its version; any
        other value must be a version ``X.Y``, or the client is refused
        with InvalidInput (oslo.messaging would fail only at the first
        call, with an error that does not name the option).
        """
        if cap is None:
            return None
        cap = cls.VERSION_ALIASES.get(cap, cap)
        if not (isinstance(cap, str) and _VERSION_RE.fullmatch(cap)):
            raise exception.InvalidInput(
                reason='[upgrade_levels] consolelog must be a version such '
                       'as 1.0 or one of %s, not %.40r' % (
                           ', '.join(sorted(cls.VERSION_ALIASES)), cap))
        return cap

    def can_send_version(self, version):
        return self.client.can_send_version(version)

    def _prepare(self, host, version='1.0', timeout=None):
        return self.client.prepare(
            server=host, version=version,
            timeout=timeout or self.conf.consolelog.rpc_timeout)

    @_peer_support('console-log describe', first_contact=True)
    def describe(self, ctxt, host, instance_uuid, stash_id=None,
                 checksums=False, tail_bytes=0):
        """ConsoleLogSet of the instance's live chain, or of a stash."""
        return self._prepare(host).call(
            ctxt, 'describe_console_log', instance_uuid=instance_uuid,
            stash_id=stash_id, checksums=checksums, tail_bytes=tail_bytes)

    @_peer_support('console-log stashes', first_contact=True)
    def list_stashes(self, ctxt, host, instance_uuid, checksums=False,
                     tail_bytes=0, timeout=None):
        """ConsoleLogSets of the instance's stashes on host, oldest first.

        ``timeout``: seconds, instead of ``rpc_timeout`` (a probe of a host
        that is probably down).
        """
        return self._prepare(host, timeout=timeout).call(
            ctxt, 'list_console_log_stashes', instance_uuid=instance_uuid,
            checksums=checksums, tail_bytes=tail_bytes)

    @_peer_support('console-log chunk read')
    def read_chunk(self, ctxt, host, instance_uuid, name, offset, length,
                   stash_id=None, compress=True, timeout=None):
        """ConsoleLogChunk with up to ``length`` bytes of file ``name``.

        Compression is asked for only when we may send 1.1 (version cap);
        a peer that answers UnsupportedVersion to 1.1 is asked again, and
        from then on, with 1.0, and answers an uncompressed 1.0 chunk.
        """
        kwargs = dict(instance_uuid=instance_uuid, name=name, offset=offset,
                      length=length, stash_id=stash_id)
        if self.can_send_version('1.1') and host not in self._only_1_0:
            try:
                return self._prepare(host, '1.1', timeout).call(
                    ctxt, 'read_console_log_chunk',
                    compression=(cl_fields.Compression.ZLIB if compress
                                 else cl_fields.Compression.NONE),
                    **kwargs)
            except (oslo_messaging.RemoteError,
                    oslo_messaging.UnsupportedVersion) as e:
                if not _lacks_call(e, only=('UnsupportedVersion',)):
                    raise
            # The peer runs an older release: speak 1.0 to it from now on.
            LOG.info('Host %s does not speak console-log RPC 1.1; reading '
                     'uncompressed 1.0 chunks', host)
            self._only_1_0.add(host)
        return self._prepare(host, '1.0', timeout).call(
            ctxt, 'read_console_log_chunk', **kwargs)

    def bulk_supported(self, host):
        """Whether a pull from ``host`` may try the bulk channel (1.2)."""
        return (self.bulk_url is not None and host not in self._pre_1_2 and
                self.can_send_version('1.2'))

    @_peer_support('console-log transfer (RPC 1.3)')
    def open_transfer(self, ctxt, host, instance_uuid, puller_host,
                      stash_id=None, timeout=None):
        """Have ``host`` hand a stash (or a pin of its live chain) to us.

        Returns a ConsoleLogSet with hash lists, ``block_size`` and
        ``transfer_token``. PeerUnsupported when ``host`` (or our version
        cap) does not speak 1.3.
        """
        if not self.can_send_version('1.3'):
            raise oslo_messaging.RPCVersionCapError(
                version='1.3', version_cap=self.version_cap)
        return self._prepare(host, '1.3', timeout).call(
            ctxt, 'open_console_log_transfer', instance_uuid=instance_uuid,
            stash_id=stash_id, puller_host=puller_host)

    @_peer_support('console-log bulk range')
    def send_range(self, ctxt, host, instance_uuid, name, offset, length,
                   reply_queue, stash_id=None, compress=True, timeout=None,
                   request_token=None):
        """Ask ``host`` to publish a window of ``name`` to ``reply_queue``.

        Returns the source's summary ``{'chunks', 'bytes', 'eof'}`` once
        every chunk is published. A peer that does not speak 1.2 raises
        PeerUnsupported and is not asked again (``bulk_supported``).
        ``request_token`` (1.3) is copied into every message.
        """
        kwargs = dict(instance_uuid=instance_uuid, stash_id=stash_id,
                      name=name, offset=offset, length=length,
                      reply_queue=reply_queue,
                      compression=(cl_fields.Compression.ZLIB if compress
                                   else cl_fields.Compression.NONE))
        version = '1.2'
        if request_token is not None:
            version = '1.3'
            kwargs['request_token'] = request_token
        try:
            return self._prepare(host, version, timeout).call(
                ctxt, 'send_console_log_range', **kwargs)
        except Exception as e:
            if _lacks_call(e):
                self._pre_1_2.add(host)
            raise

    @_peer_support('console-log stash release')
    def release(self, ctxt, host, instance_uuid, stash_id, sha256s,
                transfer_token=None, puller_host=None):
        """Ask ``host`` to delete its stash after a verified install.

        With RPC 1.3: ``sha256s`` maps every file of the stash to the root
        of its hash list, ``transfer_token`` is the token the transfer was
        opened with, ``puller_host`` our host name. Without a token (1.0)
        a source of 1.3 or later refuses.
        """
        kwargs = dict(instance_uuid=instance_uuid, stash_id=stash_id,
                      sha256s=sha256s)
        version = '1.0'
        if transfer_token is not None:
            version = '1.3'
            kwargs.update(transfer_token=transfer_token,
                          puller_host=puller_host)
        return self._prepare(host, version).call(
            ctxt, 'release_console_log_stash', **kwargs)
