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

"""The part of a console log the peer holds, read over RPC.

While the guest runs on the destination and the import is not installed,
each host holds one part: the source the older one (its stash, or its live
chain before the stash is made), the destination the newer one (its
virtlogd files). Each side reads the other's part with the console-log RPC
(``list_stashes``, ``describe``) and joins it to its own. Never under the
hand-over lock: no RPC call is made holding it.
"""

from nova_consolelog import exception
from nova_consolelog.objects import console_log as objects
from nova_consolelog.objects import fields as cl_fields


class StateChanged(Exception):
    """The hand-over moved on during a read; read again."""


def join(parts, max_bytes):
    """The last ``max_bytes`` of ``parts``, oldest part first."""
    return b''.join(parts)[-max_bytes:] if max_bytes else b''


class PeerParts:
    """Reads of the peer's part, each joined to this host's."""

    def __init__(self, host):
        self.host = host

    def destination_tail(self, instance_uuid, chain, peer, record,
                         max_bytes):
        """Destination before the import: the source's part + our new one.

        Our history is left out until the record says the import is
        installed: until then the source still holds that part (it only
        releases its stash afterwards).
        """
        host = self.host
        with host.lock(instance_uuid, shared=True):
            new = self._tail_of(chain, max_bytes, history=False)
        older = self._source_part(peer, instance_uuid, max_bytes)
        now = host.record(instance_uuid).load()
        if now is None or now.get('state') != record.get('state'):
            raise StateChanged()
        return join([older, new], max_bytes)

    def _tail_of(self, chain, max_bytes, history=True):
        try:
            found = chain.describe(self.host.host, chain.instance,
                                   tail_bytes=max_bytes)
        except exception.InstanceDirNotFound:
            return b''
        except exception.ConsoleLogError as e:
            raise StateChanged() from e
        if not history:
            found.files = [f for f in found.files
                           if f.kind != cl_fields.FileKind.HISTORY]
        return found.merged_tail(max_bytes)

    def _source_part(self, peer, instance_uuid, max_bytes):
        """What the source holds: its stashes, else its live chain.

        Two calls, not atomic: a stash made between them empties the live
        chain, so an empty answer is asked again once.
        """
        rpcapi = self.host.rpcapi
        for _ in range(2):
            sets = rpcapi.list_stashes({}, peer, instance_uuid,
                                       tail_bytes=max_bytes)
            if sets:
                return b''.join(s.merged_tail(max_bytes) for s in sets)
            try:
                live = rpcapi.describe({}, peer, instance_uuid,
                                       tail_bytes=max_bytes)
            except exception.InstanceDirNotFound:
                continue
            if live.files:
                return live.merged_tail(max_bytes)
        return b''

    def source_tail(self, instance_uuid, chain, peer, max_bytes,
                    last_attempt):
        """Source during a hand-over: our part + the destination's new one.

        While we hold the older part (a stash, or the live chain before the
        stash is made) the destination's history would repeat it: only its
        virtlogd files count then. Once our stash is released, the
        destination's history holds our part.
        """
        host = self.host
        try:
            remote = host.rpcapi.describe({}, peer, instance_uuid,
                                          tail_bytes=max_bytes)
        except exception.InstanceDirNotFound:
            # The destination has not made the instance directory yet.
            remote = objects.ConsoleLogSet(files=[])
        history = [f for f in remote.files
                   if f.kind == cl_fields.FileKind.HISTORY]
        full = remote.merged_tail(max_bytes)
        remote.files = [f for f in remote.files
                        if f.kind != cl_fields.FileKind.HISTORY]
        new = remote.merged_tail(max_bytes)
        with host.lock(instance_uuid, shared=True):
            try:
                older = [s.chain.read_tail(max_bytes)
                         for s in host.stashes(instance_uuid)]
            except exception.ConsoleLogError as e:
                raise StateChanged() from e
            if not older:
                older = [self._tail_of(chain, max_bytes)]
        if any(older):
            return join(older + [new], max_bytes)
        if history or last_attempt:
            return full
        # Our stash went between the two reads: the destination has its
        # history by now.
        raise StateChanged()
