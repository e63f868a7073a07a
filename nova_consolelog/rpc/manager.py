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

"""The console-log RPC endpoint: what a host serves to its peers.

Everything a caller sends is untrusted. Each call checks its arguments
first (``rpc.endpoint_checks``), then serves files of the named instance's
chain or of one of its stashes or pins, and nothing else
(``rpc.served``). Bad input raises a typed error from
``nova_consolelog.exception`` (sent back to the caller as that class) and
changes nothing.
"""

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import exception
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import endpoint_checks as checks
from nova_consolelog.rpc import served
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)

# Re-exported: tests and callers name the bounds from here.
MAX_READ = checks.MAX_READ
MAX_WINDOW = checks.MAX_WINDOW

_rpc = checks.rpc


class ConsoleLogManager:
    """Endpoint of the console-log RPC on host ``host``.

    :param conf: ConfigOpts with our options registered.
    :param host: this host's name, as peers address it.
    :param bulk_url: kombu URL of the broker for the bulk channel (RPC
        1.2), or None when the transport has none (``fake://``); the server
        sets it from its transport (``set_bulk_channel``).
    :param bulk_ssl: kombu's ``ssl`` for that broker (``broker.kombu_ssl``).

    Only the methods marked ``oslo_messaging.expose`` are callable over RPC
    (the server uses ``ExplicitRPCAccessPolicy``): oslo.messaging would
    otherwise dispatch every public callable attribute, this object's
    configuration included. Its state is private for the same reason.
    """

    target = oslo_messaging.Target(version='1.3', namespace='consolelog')

    def __init__(self, conf, host, bulk_url=None, bulk_ssl=False):
        self._conf = conf
        self._host = host
        self._bulk_url = bulk_url
        self._bulk_ssl = bulk_ssl

    def set_bulk_channel(self, url, ssl_params=False):
        """Where the bulk channel publishes (not callable over RPC)."""
        self._bulk_url = url
        self._bulk_ssl = ssl_params

    @property
    def bulk_channel(self):
        """(url, ssl) of the bulk channel; url None when there is none."""
        return self._bulk_url, self._bulk_ssl

    # -- what is served ---------------------------------------------------

    def _source(self, instance_uuid, stash_id):
        """(chain, {name: size the reads stop at}) of what is read."""
        return served.source(self._conf, instance_uuid, stash_id)

    def _read(self, chain, limits, name, offset, length):
        """Every read of a chunk call or a bulk window goes through here.

        ``served.read_within``: reads of a stash or pin stop at the size
        it recorded.
        """
        return served.read_within(chain, limits, name, offset, length)

    # -- 1.0 -------------------------------------------------------------

    @_rpc
    def describe_console_log(self, ctxt, instance_uuid, stash_id=None,
                             checksums=False, tail_bytes=0):
        """ConsoleLogSet of the instance's live chain, or of one stash.

        ``checksums`` adds the sha256 of every file no longer written to;
        ``tail_bytes`` adds each file's last bytes for a merged read.
        """
        checks.check_describe(instance_uuid, stash_id, checksums,
                              tail_bytes)
        with served.handover_lock(self._conf, shared=True):
            if stash_id is not None:
                stash = served.load_stash(self._conf, instance_uuid,
                                          stash_id)
                return served.compatible(served.describe_stash(
                    self._host, instance_uuid, stash, checksums,
                    tail_bytes))
            chain = served.instance_chain(self._conf, instance_uuid)
            return served.compatible(chain.describe(
                self._host, instance_uuid, checksums=checksums,
                tail_bytes=tail_bytes))

    @_rpc
    def list_console_log_stashes(self, ctxt, instance_uuid, checksums=False,
                                 tail_bytes=0):
        """ConsoleLogSet of every stash of the instance, oldest first."""
        checks.check_describe(instance_uuid, None, checksums, tail_bytes)
        with served.handover_lock(self._conf, shared=True):
            stashes = cl_stash.Stash.list(
                instance_uuid, root=served.stash_root(self._conf),
                conf=self._conf)
            return [served.compatible(served.describe_stash(
                self._host, instance_uuid, s, checksums, tail_bytes))
                for s in stashes]

    @_rpc
    def read_console_log_chunk(self, ctxt, instance_uuid, name, offset,
                               length, stash_id=None, compression=None):
        """Up to ``length`` bytes of chain file ``name`` from ``offset``.

        ``compression`` is sent by 1.1 callers only: a 1.0 caller (no
        ``compression``) gets a 1.0 chunk, never compressed, as the
        primitive of ConsoleLogChunk 1.0, which its deserializer knows.
        Reads of a stash or pin stop at the size it recorded.
        """
        checks.check_read(instance_uuid, stash_id, name, offset, length,
                          compression, MAX_READ)
        length = min(length, self._conf.consolelog.chunk_size)
        chain, limits = self._source(instance_uuid, stash_id)
        data, eof = self._read(chain, limits, name, offset, length)
        chunk = cl_objects.ConsoleLogChunk.from_bytes(
            data, compress=compression == cl_fields.Compression.ZLIB,
            instance_uuid=instance_uuid, stash_id=stash_id, name=name,
            offset=offset, eof=eof)
        if compression is None:
            return chunk.obj_to_primitive(target_version='1.0')
        return chunk

    # -- 1.2 -------------------------------------------------------------

    @_rpc
    def send_console_log_range(self, ctxt, instance_uuid, stash_id, name,
                               offset, length, reply_queue, compression,
                               request_token=None):
        """Publish ``length`` bytes of ``name`` to the caller's bulk queue.

        The bytes go as ``chunk_size`` binary AMQP messages (see
        rpc.bulk) to ``reply_queue``, a queue the caller declared on this
        host's broker; the call returns when all are published, so the
        caller's calls in flight bound what waits in its queue. ``length``
        is cut to this host's ``bulk_window``. ``request_token`` (1.3): a
        random value of the caller's, copied into every message together
        with the instance, stash, file and offset, so that the caller
        takes only messages answering this very request.

        :returns: ``{'chunks': n, 'bytes': raw bytes, 'eof': bool}``.
        :raises: BulkUnavailable when this host has no bulk channel or
            cannot publish (the caller reads the range with chunk calls).
        """
        checks.check_range(instance_uuid, stash_id, name, offset, length,
                           reply_queue, compression, request_token)
        group = self._conf.consolelog
        if self._bulk_url is None or not group.bulk_transfer:
            raise exception.BulkUnavailable(
                reason='host %s offers no bulk channel (no RabbitMQ '
                'transport, or bulk_transfer is off)' % self._host)
        length = min(length, group.bulk_window)
        chain, limits = self._source(instance_uuid, stash_id)
        # Read the first chunk now: a bad name or offset is the caller's
        # error (typed), before anything is published.
        first = self._read(chain, limits, name, offset,
                           min(length, group.chunk_size))
        summary = {'chunks': 0, 'bytes': 0, 'eof': False}
        binding = {}
        if request_token is not None:
            binding = dict(token=request_token, instance_uuid=instance_uuid,
                           stash_id=stash_id)
        frames = served.range_frames(
            lambda position, size: self._read(chain, limits, name, position,
                                              size),
            first, name, offset, length, group.chunk_size, compression,
            binding, summary)
        cl_bulk.publisher_for(self._bulk_url, self._bulk_ssl).publish(
            reply_queue, frames)
        return summary

    # -- 1.3 -------------------------------------------------------------

    @_rpc
    def open_console_log_transfer(self, ctxt, instance_uuid, stash_id=None,
                                  puller_host=None):
        """Hand a stash (or a pin of the live chain) to ``puller_host``.

        Returns a ConsoleLogSet 1.1 whose files carry the hash lists the
        puller checks every installed byte against, and a release token
        granted to ``puller_host`` alone (see stash.Stash.grant). With
        ``stash_id`` None the live chain is pinned first: the set's
        ``stash_id`` names the pin, read and released like a stash.
        """
        checks.check_open(instance_uuid, stash_id, puller_host)
        stash_root = served.stash_root(self._conf)
        group = self._conf.consolelog
        cl_stash.expire(2 * group.pull_timeout,
                        root=cl_stash.pin_root(stash_root), conf=self._conf)
        if stash_id is None:
            with served.handover_lock(self._conf, shared=True):
                chain = served.instance_chain(self._conf, instance_uuid)
                stash = cl_stash.Stash.pin(instance_uuid, chain, stash_root,
                                           host=puller_host, conf=self._conf)
        with served.handover_lock(self._conf):
            if stash_id is not None:
                stash = served.load_stash(self._conf, instance_uuid,
                                          stash_id)
            entries = stash.transfer_files()
            token = stash.grant(puller_host)
            base = stash.manifest.get('base_offset')
            if not isinstance(base, int) or base < 0:
                base = stash.base_offset()
        files = [cl_objects.ConsoleLogFile(
            name=e['name'], kind=e['kind'], position=position,
            size=e['size'], mtime=float(e.get('mtime') or 0.0), live=False,
            blocks=e['blocks']) for position, e in enumerate(entries)]
        LOG.info('Console-log %s %s of instance %s handed to %s',
                 'pin' if stash_id is None else 'stash', stash.stash_id,
                 instance_uuid, puller_host)
        return cl_objects.ConsoleLogSet(
            instance_uuid=instance_uuid, host=self._host,
            stash_id=stash.stash_id, base_offset=base, files=files,
            block_size=stash.manifest['block_size'], transfer_token=token)

    @_rpc
    def release_console_log_stash(self, ctxt, instance_uuid, stash_id,
                                  sha256s, transfer_token=None,
                                  puller_host=None):
        """Delete a stash (or pin) its puller has verified and installed.

        Only the host a transfer of the stash was granted to, with the
        token it was given (``open_console_log_transfer``), and with the
        root of every file's hash list in ``sha256s``, can release it:
        knowing the checksums is not enough. A resize's stash is only
        marked installed until the resize is confirmed (see
        ``stash.Stash.settle_install``). Releases without a token
        (callers of 1.0 to 1.2) are refused; such a stash expires after
        ``stash_expiry``. Otherwise HandoverRefused or ChecksumMismatch,
        and the stash stays: no byte is dropped on the word of a caller
        that does not have it.
        """
        checks.check_release(instance_uuid, stash_id, sha256s,
                             transfer_token, puller_host)
        with served.handover_lock(self._conf):
            stash = served.load_stash(self._conf, instance_uuid, stash_id)
            stash.check_release(puller_host, transfer_token, sha256s)
            # A resize's stash stays until the confirm (a revert needs it).
            deleted = stash.settle_install(puller_host)
        LOG.info('%s console-log stash %s of instance %s: %s verified and '
                 'installed %d file(s)',
                 'Released' if deleted else 'Kept until the resize is '
                 'confirmed', stash_id, instance_uuid, puller_host,
                 len(sha256s))
        return True
