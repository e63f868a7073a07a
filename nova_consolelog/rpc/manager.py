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

Everything a caller sends is untrusted. The endpoint only ever serves files
of the named instance's chain (``<instances_path>/<uuid>``) or of one of
its stashes (``<stash_path>/<uuid>/<stash_id>``): directories come from
configuration and a validated uuid/stash id, file names must be exact
member names of that chain, and the chain module opens them without
following symlinks. Bad input raises a typed error from
``nova_consolelog.exception`` (sent back to the caller as that class) and
changes nothing.
"""

import functools
import inspect

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import names
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog.rpc import frames
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)

# Hard upper bound of one read, whatever the configuration: the largest
# ``chunk_size`` allowed. Within it a read is cut to this host's chunk_size.
MAX_READ = 8 * 1024 * 1024
# Hard upper bound of one bulk window (the largest ``bulk_window``).
MAX_WINDOW = 64 * 1024 * 1024

_expected = oslo_messaging.expected_exceptions(exception.ConsoleLogError)


def _rpc(method):
    """An RPC method: dispatched (explicit access policy), typed errors.

    Arguments that do not fit the method (unknown, missing) are the
    caller's error, InvalidInput, not a TypeError from deep inside.
    """
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(self, ctxt, *args, **kwargs):
        try:
            signature.bind(self, ctxt, *args, **kwargs)
        except TypeError as e:
            raise _invalid(str(e)[:200]) from None
        return method(self, ctxt, *args, **kwargs)
    return oslo_messaging.expose(_expected(checked))


def _invalid(reason):
    return exception.InvalidInput(reason=reason)


def _check_stash_id(stash_id, required=False):
    """A stash id, or None where the call allows none (the live chain)."""
    if stash_id is None and not required:
        return None
    return names.check_stash_id(stash_id)


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

    # -- helpers ---------------------------------------------------------

    def _stash_root(self):
        return cl_conf.stash_path(self._conf)

    def _instance_chain(self, instance_uuid):
        return cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                     conf=self._conf)

    def _lock(self, shared=False):
        """The host's hand-over lock (see stash.handover_lock).

        No stash is half made or half released while this host describes,
        lists or releases one.
        """
        return cl_stash.handover_lock(self._conf.consolelog.instances_path,
                                      shared=shared)

    def _stash(self, instance_uuid, stash_id):
        root = self._stash_root()
        if cl_stash.is_pin_id(stash_id):
            root = cl_stash.pin_root(root)
        return cl_stash.Stash.load(instance_uuid, stash_id, root=root,
                                   conf=self._conf)

    def _source(self, instance_uuid, stash_id):
        """(chain, {name: size the reads stop at}) of what is read."""
        if stash_id is None:
            return self._instance_chain(instance_uuid), {}
        stash = self._stash(instance_uuid, stash_id)
        limits = {}
        if stash.manifest.get('block_size'):
            limits = {e['name']: e['size']
                      for e in stash.manifest.get('files', ())
                      if 'blocks' in e}
        return stash.chain, limits

    def _read(self, chain, limits, name, offset, length):
        """``chain.read_chunk`` within the size a pin or stash recorded.

        A pinned file may have grown since (virtlogd appends to the linked
        inode): the bytes past its recorded size are not part of it.
        """
        limit = limits.get(name)
        if limit is None:
            return chain.read_chunk(name, offset, length)
        if offset > limit:
            raise _invalid('offset %d is beyond the end of %s (%d bytes)' % (
                offset, name, limit))
        data, _eof = chain.read_chunk(name, offset,
                                      min(length, limit - offset))
        return data, offset + len(data) >= limit

    def _describe_stash(self, instance_uuid, stash, checksums, tail_bytes):
        return stash.chain.describe(
            self._host, instance_uuid, checksums=checksums,
            tail_bytes=tail_bytes, stash_id=stash.stash_id,
            live_names=stash.live_names)

    def _check_tail(self, tail_bytes):
        return names.check_int('tail_bytes', tail_bytes, 0, MAX_READ)

    @staticmethod
    def _compatible(console_log_set):
        """The set as version 1.0, which callers of 1.0 to 1.2 know.

        The object keeps that version, so the serializer sends its 1.0
        primitive (a 1.1 set would not deserialize on an older peer).
        """
        return cl_objects.ConsoleLogSet.obj_from_primitive(
            console_log_set.obj_to_primitive(target_version='1.0'))

    # -- 1.0 -------------------------------------------------------------

    @_rpc
    def describe_console_log(self, ctxt, instance_uuid, stash_id=None,
                             checksums=False, tail_bytes=0):
        """ConsoleLogSet of the instance's live chain, or of one stash.

        ``checksums`` adds the sha256 of every file no longer written to;
        ``tail_bytes`` adds each file's last bytes for a merged read.
        """
        names.check_instance_uuid(instance_uuid)
        _check_stash_id(stash_id)
        names.check_bool('checksums', checksums)
        self._check_tail(tail_bytes)
        with self._lock(shared=True):
            if stash_id is not None:
                stash = self._stash(instance_uuid, stash_id)
                return self._compatible(self._describe_stash(
                    instance_uuid, stash, checksums, tail_bytes))
            chain = self._instance_chain(instance_uuid)
            return self._compatible(chain.describe(
                self._host, instance_uuid, checksums=checksums,
                tail_bytes=tail_bytes))

    @_rpc
    def list_console_log_stashes(self, ctxt, instance_uuid, checksums=False,
                                 tail_bytes=0):
        """ConsoleLogSet of every stash of the instance, oldest first."""
        names.check_instance_uuid(instance_uuid)
        names.check_bool('checksums', checksums)
        self._check_tail(tail_bytes)
        with self._lock(shared=True):
            stashes = cl_stash.Stash.list(
                instance_uuid, root=self._stash_root(), conf=self._conf)
            return [self._compatible(self._describe_stash(
                instance_uuid, s, checksums, tail_bytes)) for s in stashes]

    def _check_read(self, instance_uuid, stash_id, name, offset, length,
                    compression, max_length):
        names.check_instance_uuid(instance_uuid)
        _check_stash_id(stash_id)
        if not isinstance(name, str) or len(name) > 64:
            raise _invalid('name must be a file name')
        names.check_int('offset', offset, 0, 2 ** 63 - 1)
        names.check_int('length', length, 1, max_length)
        if compression is not None and (
                compression not in cl_fields.Compression.ALL):
            raise _invalid('unknown compression %.40r' % (compression,))

    @_rpc
    def read_console_log_chunk(self, ctxt, instance_uuid, name, offset,
                               length, stash_id=None, compression=None):
        """Up to ``length`` bytes of chain file ``name`` from ``offset``.

        ``compression`` is sent by 1.1 callers only: a 1.0 caller (no
        ``compression``) gets a 1.0 chunk, never compressed, as the
        primitive of ConsoleLogChunk 1.0, which its deserializer knows.
        Reads of a stash or pin stop at the size it recorded.
        """
        self._check_read(instance_uuid, stash_id, name, offset, length,
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
        self._check_read(instance_uuid, stash_id, name, offset, length,
                         compression, MAX_WINDOW)
        if compression is None:
            raise _invalid('compression is required')
        if request_token is not None:
            names.check_token(request_token)
        cl_bulk.check_queue_name(reply_queue)
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

        def chunks():
            data, eof = first
            position = offset
            end = offset + length
            while True:
                chunk = cl_objects.ConsoleLogChunk.from_bytes(
                    data,
                    compress=compression == cl_fields.Compression.ZLIB)
                yield (frames.chunk_headers(
                    name, position, len(data), chunk.sha256,
                    chunk.compression, eof, **binding), chunk.data)
                summary['chunks'] += 1
                summary['bytes'] += len(data)
                summary['eof'] = eof
                position += len(data)
                if eof or not data or position >= end:
                    return
                data, eof = self._read(
                    chain, limits, name, position,
                    min(end - position, group.chunk_size))

        cl_bulk.publisher_for(self._bulk_url, self._bulk_ssl).publish(
            reply_queue, chunks())
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
        names.check_instance_uuid(instance_uuid)
        _check_stash_id(stash_id)
        names.check_host_name(puller_host)
        stash_root = self._stash_root()
        group = self._conf.consolelog
        cl_stash.expire(2 * group.pull_timeout,
                        root=cl_stash.pin_root(stash_root), conf=self._conf)
        if stash_id is None:
            with self._lock(shared=True):
                chain = self._instance_chain(instance_uuid)
                stash = cl_stash.Stash.pin(instance_uuid, chain, stash_root,
                                           host=puller_host, conf=self._conf)
        with self._lock():
            if stash_id is not None:
                stash = self._stash(instance_uuid, stash_id)
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
        names.check_instance_uuid(instance_uuid)
        _check_stash_id(stash_id, required=True)
        if not isinstance(sha256s, dict) or len(sha256s) > 4096 or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in sha256s.items()):
            raise _invalid('sha256s must map file names to hex digests')
        if transfer_token is None:
            raise exception.HandoverRefused(
                stash_id=stash_id, instance=instance_uuid,
                reason='a release needs the token of a transfer (RPC 1.3)')
        names.check_token(transfer_token)
        names.check_host_name(puller_host)
        with self._lock():
            stash = self._stash(instance_uuid, stash_id)
            stash.check_release(puller_host, transfer_token, sha256s)
            # A resize's stash stays until the confirm (a revert needs it).
            deleted = stash.settle_install(puller_host)
        LOG.info('%s console-log stash %s of instance %s: %s verified and '
                 'installed %d file(s)',
                 'Released' if deleted else 'Kept until the resize is '
                 'confirmed', stash_id, instance_uuid, puller_host,
                 len(sha256s))
        return True
