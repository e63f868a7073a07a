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

import hashlib

from oslo_log import log as logging
import oslo_messaging
from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import bulk as cl_bulk
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)

# Hard upper bound of one read, whatever the configuration: the largest
# ``chunk_size`` allowed. Within it a read is cut to this host's chunk_size.
MAX_READ = 8 * 1024 * 1024
# Hard upper bound of one bulk window (the largest ``bulk_window``).
MAX_WINDOW = 64 * 1024 * 1024

_expected = oslo_messaging.expected_exceptions(exception.ConsoleLogError)


def _invalid(reason):
    return exception.InvalidInput(reason=reason)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid('%s must be an integer, not %s' % (
            name, type(value).__name__))
    if not low <= value <= high:
        raise _invalid('%s=%d is outside [%d, %d]' % (name, value, low,
                                                      high))
    return value


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise _invalid('%s must be true or false, not %s' % (
            name, type(value).__name__))
    return value


def _check_uuid(instance_uuid):
    if not isinstance(instance_uuid, str) or not uuidutils.is_uuid_like(
            instance_uuid):
        raise _invalid('instance_uuid %r is not a uuid' % (instance_uuid,))
    return instance_uuid


def _check_stash_id(stash_id, required=False):
    if stash_id is None and not required:
        return None
    if not isinstance(stash_id, str):
        raise _invalid('stash_id must be a string, not %s' % (
            type(stash_id).__name__))
    return stash_id


class ConsoleLogManager:
    """Endpoint of the console-log RPC on host ``host``.

    :param conf: ConfigOpts with our options registered.
    :param host: this host's name, as peers address it.
    :param bulk_url: kombu URL of the broker for the bulk channel (RPC
        1.2), or None when the transport has none (``fake://``); the server
        sets it from its transport.
    :param bulk_ssl: kombu's ``ssl`` for that broker (``bulk.kombu_ssl``).
    """

    target = oslo_messaging.Target(version='1.2', namespace='consolelog')

    def __init__(self, conf, host, bulk_url=None, bulk_ssl=False):
        self.conf = conf
        self.host = host
        self.bulk_url = bulk_url
        self.bulk_ssl = bulk_ssl

    # -- helpers ---------------------------------------------------------

    def _stash_root(self):
        return cl_conf.stash_path(self.conf)

    def _instance_chain(self, instance_uuid):
        return cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                     conf=self.conf)

    def _lock(self, shared=False):
        """The host's hand-over lock (see stash.handover_lock).

        No stash is half made or half released while this host describes,
        lists or releases one.
        """
        return cl_stash.handover_lock(self.conf.consolelog.instances_path,
                                      shared=shared)

    def _stash(self, instance_uuid, stash_id):
        return cl_stash.Stash.load(instance_uuid, stash_id,
                                   root=self._stash_root(), conf=self.conf)

    def _chain(self, instance_uuid, stash_id):
        if stash_id is None:
            return self._instance_chain(instance_uuid)
        return self._stash(instance_uuid, stash_id).chain

    def _describe_stash(self, instance_uuid, stash, checksums, tail_bytes):
        return stash.chain.describe(
            self.host, instance_uuid, checksums=checksums,
            tail_bytes=tail_bytes, stash_id=stash.stash_id,
            live_names=stash.live_names)

    def _check_tail(self, tail_bytes):
        return _check_int('tail_bytes', tail_bytes, 0, MAX_READ)

    # -- 1.0 -------------------------------------------------------------

    @_expected
    def describe_console_log(self, ctxt, instance_uuid, stash_id=None,
                             checksums=False, tail_bytes=0):
        """ConsoleLogSet of the instance's live chain, or of one stash.

        ``checksums`` adds the sha256 of every file no longer written to;
        ``tail_bytes`` adds each file's last bytes for a merged read.
        """
        _check_uuid(instance_uuid)
        _check_stash_id(stash_id)
        _check_bool('checksums', checksums)
        self._check_tail(tail_bytes)
        with self._lock(shared=True):
            if stash_id is not None:
                stash = self._stash(instance_uuid, stash_id)
                return self._describe_stash(instance_uuid, stash, checksums,
                                            tail_bytes)
            chain = self._instance_chain(instance_uuid)
            return chain.describe(self.host, instance_uuid,
                                  checksums=checksums, tail_bytes=tail_bytes)

    @_expected
    def list_console_log_stashes(self, ctxt, instance_uuid, checksums=False,
                                 tail_bytes=0):
        """ConsoleLogSet of every stash of the instance, oldest first."""
        _check_uuid(instance_uuid)
        _check_bool('checksums', checksums)
        self._check_tail(tail_bytes)
        with self._lock(shared=True):
            stashes = cl_stash.Stash.list(
                instance_uuid, root=self._stash_root(), conf=self.conf)
            return [self._describe_stash(instance_uuid, s, checksums,
                                         tail_bytes)
                    for s in stashes]

    def _check_read(self, instance_uuid, stash_id, name, offset, length,
                    compression, max_length):
        _check_uuid(instance_uuid)
        _check_stash_id(stash_id)
        if not isinstance(name, str):
            raise _invalid('name must be a string, not %s' % (
                type(name).__name__))
        _check_int('offset', offset, 0, 2 ** 63 - 1)
        _check_int('length', length, 1, max_length)
        if compression is not None and (
                compression not in cl_fields.Compression.ALL):
            raise _invalid('unknown compression %r' % (compression,))

    @_expected
    def read_console_log_chunk(self, ctxt, instance_uuid, name, offset,
                               length, stash_id=None, compression=None):
        """Up to ``length`` bytes of chain file ``name`` from ``offset``.

        ``compression`` is sent by 1.1 callers only: a 1.0 caller (no
        ``compression``) gets a 1.0 chunk, never compressed, as the
        primitive of ConsoleLogChunk 1.0, which its deserializer knows.
        """
        self._check_read(instance_uuid, stash_id, name, offset, length,
                         compression, MAX_READ)
        length = min(length, self.conf.consolelog.chunk_size)
        chain = self._chain(instance_uuid, stash_id)
        data, eof = chain.read_chunk(name, offset, length)
        chunk = cl_objects.ConsoleLogChunk.from_bytes(
            data, compress=compression == cl_fields.Compression.ZLIB,
            instance_uuid=instance_uuid, stash_id=stash_id, name=name,
            offset=offset, eof=eof)
        if compression is None:
            return chunk.obj_to_primitive(target_version='1.0')
        return chunk

    # -- 1.2 -------------------------------------------------------------

    @_expected
    def send_console_log_range(self, ctxt, instance_uuid, stash_id, name,
                               offset, length, reply_queue, compression):
        """Publish ``length`` bytes of ``name`` to the caller's bulk queue.

        The bytes go as ``chunk_size`` binary AMQP messages (see
        rpc.bulk) to ``reply_queue``, a queue the caller declared on this
        host's broker; the call returns when all are published, so the
        caller's calls in flight bound what waits in its queue. ``length``
        is cut to this host's ``bulk_window``.

        :returns: ``{'chunks': n, 'bytes': raw bytes, 'eof': bool}``.
        :raises: BulkUnavailable when this host has no bulk channel or
            cannot publish (the caller reads the range with chunk calls).
        """
        self._check_read(instance_uuid, stash_id, name, offset, length,
                         compression, MAX_WINDOW)
        if compression is None:
            raise _invalid('compression is required')
        cl_bulk.check_queue_name(reply_queue)
        group = self.conf.consolelog
        if self.bulk_url is None or not group.bulk_transfer:
            raise exception.BulkUnavailable(
                reason='host %s offers no bulk channel (no RabbitMQ '
                'transport, or bulk_transfer is off)' % self.host)
        length = min(length, group.bulk_window)
        chain = self._chain(instance_uuid, stash_id)
        # Read the first chunk now: a bad name or offset is the caller's
        # error (typed), before anything is published.
        first = chain.read_chunk(name, offset, min(length,
                                                   group.chunk_size))
        summary = {'chunks': 0, 'bytes': 0, 'eof': False}

        def chunks():
            data, eof = first
            position = offset
            end = offset + length
            while True:
                chunk = cl_objects.ConsoleLogChunk.from_bytes(
                    data,
                    compress=compression == cl_fields.Compression.ZLIB)
                yield (cl_bulk.chunk_headers(
                    name, position, len(data), chunk.sha256,
                    chunk.compression, eof), chunk.data)
                summary['chunks'] += 1
                summary['bytes'] += len(data)
                summary['eof'] = eof
                position += len(data)
                if eof or not data or position >= end:
                    return
                data, eof = chain.read_chunk(
                    name, position, min(end - position, group.chunk_size))

        cl_bulk.publisher_for(self.bulk_url, self.bulk_ssl).publish(
            reply_queue, chunks())
        return summary

    @_expected
    def release_console_log_stash(self, ctxt, instance_uuid, stash_id,
                                  sha256s):
        """Delete a stash the caller has verified and installed.

        ``sha256s`` maps every file of the stash to the sha256 the caller
        installed. The stash is deleted only when it holds exactly these
        files with these checksums: otherwise ChecksumMismatch (or
        InvalidInput) and the stash stays — no byte is dropped on the word
        of a caller that does not have it.
        """
        _check_uuid(instance_uuid)
        _check_stash_id(stash_id, required=True)
        if not isinstance(sha256s, dict) or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in sha256s.items()):
            raise _invalid('sha256s must map file names to hex digests')
        with self._lock():
            stash = self._stash(instance_uuid, stash_id)
            names = [f.name for f in stash.chain.scan()]
            if sorted(names) != sorted(sha256s):
                raise _invalid('stash %s holds %s, release names %s' % (
                    stash_id, sorted(names), sorted(sha256s)))
            for name in names:
                actual = self._sha256(stash.chain, name)
                if actual != sha256s[name]:
                    raise exception.ChecksumMismatch(
                        name=name, offset=0, expected=sha256s[name],
                        actual=actual)
            stash.release()
        LOG.info('Released console-log stash %s of instance %s: the peer '
                 'verified %d file(s)', stash_id, instance_uuid, len(names))
        return True

    def _sha256(self, chain, name):
        digest = hashlib.sha256()
        offset = 0
        size = self.conf.consolelog.chunk_size
        while True:
            data, eof = chain.read_chunk(name, offset, size)
            digest.update(data)
            offset += len(data)
            if eof or not data:
                return digest.hexdigest()
