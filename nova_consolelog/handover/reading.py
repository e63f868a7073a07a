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

"""Console reads during a hand-over: every part, merged, oldest first.

Between the moment the guest runs on the destination and the end of the
import, the console output is split between two hosts (or between a stash
and the instance directory). While this host keeps a hand-over record, a
read fetches the part held elsewhere and merges it, so no read is ever
missing lines (nova's blueprint accepted "almost empty" output there; we do
not). A read that finds the hand-over moved on under it (a stash made or
released, an import committed) starts again. The parts held by the peer
are read by ``peer_parts``.
"""

import time

from oslo_log import log as logging
import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog.handover import peer_parts
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State

LOG = logging.getLogger(__name__)

# After a failed call, console reads leave a peer alone this long.
PEER_QUIET_SECONDS = 60
# A console read that finds the hand-over state changed under it (a stash
# made or released, an import committed) starts again, this many times.
READ_ATTEMPTS = 5


class MergedConsoleReader:
    """The console output of an instance on this host, every part merged."""

    def __init__(self, host, catchers):
        self.host = host
        self.catchers = catchers
        self.peers = peer_parts.PeerParts(host)
        self._peer_quiet_until = {}

    def read(self, instance_uuid, length=None, enabled=True):
        """The merged console output, its last ``length`` lines.

        Outside a migration this is exactly nova's read extended by the
        imported history. During a hand-over the part held elsewhere (a
        stash, or the peer host) is merged in, oldest first.
        """
        host = self.host
        max_bytes = host.conf.consolelog.max_console_bytes
        chain = host.chain(instance_uuid)
        if not enabled:
            return local_tail(chain, max_bytes, length)
        for attempt in range(READ_ATTEMPTS):
            try:
                merged = self._merged_tail(
                    instance_uuid, chain, max_bytes,
                    last_attempt=attempt == READ_ATTEMPTS - 1)
            except peer_parts.StateChanged:
                continue
            if merged is not None:
                return cl_chain.last_lines(merged, length)
            break
        else:
            LOG.warning('Console log of instance %s kept changing hands '
                        'during %d reads; returning this host\'s part only',
                        instance_uuid, READ_ATTEMPTS)
        # Under the lock: a chain moved aside between the look at the
        # hand-over state and this read would read as empty.
        with host.lock(instance_uuid, shared=True):
            return local_tail(chain, max_bytes, length)

    def _merged_tail(self, instance_uuid, chain, max_bytes, last_attempt):
        """Last ``max_bytes`` over every part; None: the peer is silent.

        Parts are read newest first. The older part may still grow while
        the newer one is read (the source's QEMU writes into its stash
        until it stops; on a shared path its virtlogd may even roll over
        into the instance directory): read in this order, such bytes are
        either in the result or newer than everything in it, never a gap.
        """
        host = self.host
        with host.lock(instance_uuid, shared=True):
            record = host.record(instance_uuid).load()
            stashes = host.stashes(instance_uuid)
            if record is None and not stashes:
                # No hand-over: nova's read (plus history), still under the
                # lock so that a migration starting now cannot move the
                # chain away in the middle of it.
                return local_tail(chain, max_bytes)
            if (record is None or record.get('shared') or
                    host.rpcapi is None or
                    State.of(record) == State.INSTALLED):
                return self._all_here(instance_uuid, chain, stashes,
                                      max_bytes)
        peer = record['peer']
        if time.time() < self._peer_quiet_until.get(peer, 0):
            return None
        try:
            if record['role'] == Role.DESTINATION:
                return self.peers.destination_tail(
                    instance_uuid, chain, peer, record, max_bytes)
            return self.peers.source_tail(instance_uuid, chain, peer,
                                          max_bytes, last_attempt)
        except peer_parts.StateChanged:
            raise
        except (oslo_messaging.MessagingException,
                exception.PeerUnsupported) as e:
            # A peer without our endpoint looks like a slow one (the call
            # times out): do not make every console read wait for it.
            self._peer_quiet_until[peer] = time.time() + PEER_QUIET_SECONDS
            LOG.warning('Console output of instance %s may miss the part '
                        'held by %s (not asked again for %ss): %s',
                        instance_uuid, peer, PEER_QUIET_SECONDS, e)
            return None
        except exception.ConsoleLogError as e:
            LOG.warning('Console output of instance %s may miss the part '
                        'held by %s: %s', instance_uuid, peer, e)
            return None

    def _all_here(self, instance_uuid, chain, stashes, max_bytes):
        """Every part is on this host (or its shared storage); locked.

        Newest part first (see ``_merged_tail``): a byte written meanwhile
        into an older part is then in the result, or newer than all of it,
        never a gap. The files the catcher keeps are left out when the
        instance directory's read already had them (virtlogd may unlink
        one between the two reads).
        """
        read = set()
        try:
            local = local_tail(chain, max_bytes, read_inodes=read)
            caught = self.catchers.caught_tail(instance_uuid, stashes,
                                               max_bytes, read)
            older = [s.chain.read_tail(max_bytes) for s in stashes]
        except (exception.ConsoleLogError, OSError) as e:
            raise peer_parts.StateChanged() from e
        return peer_parts.join(older + [caught, local], max_bytes)


def local_tail(chain, max_bytes, length=None, read_inodes=None):
    """This host's chain only (nova's read plus history); b'' if none."""
    try:
        return chain.read_tail(max_bytes, length, read_inodes=read_inodes)
    except exception.InstanceDirNotFound:
        return b''
