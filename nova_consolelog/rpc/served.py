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

"""What the console-log endpoint serves, and where it finds it.

The endpoint only ever serves files of the named instance's chain
(``<instances_path>/<uuid>``) or of one of its stashes or pins
(``<stash_path>/<uuid>/<stash_id>``): directories come from configuration
and a validated uuid or stash id (``rpc.endpoint_checks``), and the chain
module opens member names without following symlinks. Reads of a stash or
pin stop at the sizes it recorded; a bulk window's bytes become frames
here.

Why a module of its own: the calls (``rpc.manager``) say what a peer may
ask; this says which bytes an answer holds.
"""

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import frames
from nova_consolelog import stash as cl_stash


def stash_root(conf):
    return cl_conf.stash_path(conf)


def instance_chain(conf, instance_uuid):
    return cl_chain.ConsoleLogChain.for_instance(instance_uuid, conf=conf)


def handover_lock(conf, shared=False):
    """The host's hand-over lock (see stash.handover_lock).

    No stash is half made or half released while this host describes,
    lists or releases one.
    """
    return cl_stash.handover_lock(conf.consolelog.instances_path,
                                  shared=shared)


def load_stash(conf, instance_uuid, stash_id):
    """The stash, or the pin, ``stash_id`` of the instance."""
    root = stash_root(conf)
    if cl_stash.is_pin_id(stash_id):
        root = cl_stash.pin_root(root)
    return cl_stash.Stash.load(instance_uuid, stash_id, root=root, conf=conf)


def source(conf, instance_uuid, stash_id):
    """(chain, {name: size the reads stop at}) of what is read."""
    if stash_id is None:
        return instance_chain(conf, instance_uuid), {}
    stash = load_stash(conf, instance_uuid, stash_id)
    limits = {}
    if stash.manifest.get('block_size'):
        limits = {e['name']: e['size']
                  for e in stash.manifest.get('files', ())
                  if 'blocks' in e}
    return stash.chain, limits


def read_within(chain, limits, name, offset, length):
    """``chain.read_chunk`` within the size a pin or stash recorded.

    A pinned file may have grown since (virtlogd appends to the linked
    inode): the bytes past its recorded size are not part of it.
    """
    limit = limits.get(name)
    if limit is None:
        return chain.read_chunk(name, offset, length)
    if offset > limit:
        raise exception.InvalidInput(
            reason='offset %d is beyond the end of %s (%d bytes)' % (
                offset, name, limit))
    data, _eof = chain.read_chunk(name, offset, min(length, limit - offset))
    return data, offset + len(data) >= limit


def describe_stash(host, instance_uuid, stash, checksums, tail_bytes):
    return stash.chain.describe(
        host, instance_uuid, checksums=checksums, tail_bytes=tail_bytes,
        stash_id=stash.stash_id, live_names=stash.live_names)


def compatible(console_log_set):
    """The set as version 1.0, which callers of 1.0 to 1.2 know.

    The object keeps that version, so the serializer sends its 1.0
    primitive (a 1.1 set would not deserialize on an older peer).
    """
    return cl_objects.ConsoleLogSet.obj_from_primitive(
        console_log_set.obj_to_primitive(target_version='1.0'))


def range_frames(read, first, name, offset, length, chunk_size, compression,
                 binding, summary):
    """The frames of a bulk window: ``(headers, body)``, in order.

    :param read: ``(position, length) -> (data, eof)`` of file ``name``.
    :param first: ``(data, eof)`` of the window's first chunk, read before
        anything is published (a bad name or offset is the caller's
        error, typed).
    :param binding: what every frame repeats of the request (its token,
        instance and stash), empty for a 1.2 caller.
    :param summary: ``{'chunks', 'bytes', 'eof'}``, counted as frames are
        taken.
    """
    data, eof = first
    position = offset
    end = offset + length
    while True:
        chunk = cl_objects.ConsoleLogChunk.from_bytes(
            data, compress=compression == cl_fields.Compression.ZLIB)
        yield (frames.chunk_headers(
            name, position, len(data), chunk.sha256, chunk.compression, eof,
            **binding), chunk.data)
        summary['chunks'] += 1
        summary['bytes'] += len(data)
        summary['eof'] = eof
        position += len(data)
        if eof or not data or position >= end:
            return
        data, eof = read(position, min(end - position, chunk_size))
