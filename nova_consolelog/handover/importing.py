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

"""The destination's import: the source's part installed as history.

Over a shared instance path the stashes the destination moved aside are
copied in locally (``Stash.install_as_history``) with what the catcher
kept. Otherwise every stash the source lists is pulled (``transfer.pull``)
and installed, the record is set to ``INSTALLED``, and only then is each
stash released: until the record says so a console read here takes the
older part from the source, from then on from the local history. A failure
anywhere leaves the record for ``Housekeeping.retry_pending``; a retry
after a crash finds an installed import in the ledger and only releases.
"""

import os
import threading

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog.handover.record import State
from nova_consolelog import transfer

LOG = logging.getLogger(__name__)


class Importer:
    """Imports into one host; one import per instance at once."""

    def __init__(self, host, catchers):
        self.host = host
        self.catchers = catchers
        # Instances whose import runs in this process now.
        self._importing = set()
        self._importing_lock = threading.Lock()

    def run(self, instance_uuid, source_host, shared_instance_path):
        """Install what the source holds; False when left to another run.

        The migration step and the periodic retry may both want the same
        import: the second one here leaves it to the first (the staging
        file's flock keeps other processes apart).
        """
        with self._importing_lock:
            if instance_uuid in self._importing:
                LOG.debug('Console-log import of instance %s is running '
                          'already', instance_uuid)
                return False
            self._importing.add(instance_uuid)
        try:
            if shared_instance_path:
                return self._install_shared(instance_uuid)
            return self._pull(instance_uuid, source_host)
        finally:
            with self._importing_lock:
                self._importing.discard(instance_uuid)

    def _install_shared(self, instance_uuid):
        host = self.host
        chain = host.chain(instance_uuid)
        os.makedirs(chain.directory, exist_ok=True)
        with host.lock(instance_uuid):
            for stash in host.stashes(instance_uuid):
                stash.install_as_history(chain)
            self.catchers.adopt(instance_uuid, chain)
            host.record(instance_uuid).remove()
        return True

    def _pull(self, instance_uuid, source_host):
        host = self.host
        record = host.record(instance_uuid)
        chain = host.chain(instance_uuid)
        os.makedirs(chain.directory, exist_ok=True)
        if host.rpcapi is None:
            raise exception.TransferFailed(
                instance=instance_uuid, host=source_host,
                reason='no RPC client on this host')
        try:
            # Without checksums: each pull has them computed beside its
            # transfer, and releases with what it installed.
            sets = host.rpcapi.list_stashes({}, source_host, instance_uuid)
        except exception.PeerUnsupported as e:
            LOG.warning('Console log of instance %s not migrated: %s',
                        instance_uuid, e)
            record.remove()
            return False
        # Every stash is installed before any is released, and the record
        # says so in between: until then a console read here takes the old
        # part from the source (and ignores the new history), from then on
        # from the history (and ignores the source).
        pulled = [transfer.pull(host.conf, host.rpcapi, source_host,
                                instance_uuid, stash_id=remote.stash_id,
                                chain=chain, release=False,
                                local_host=host.host)
                  for remote in sets]
        with host.lock(instance_uuid):
            # Never bring back a record another import has finished.
            record.update(create=False, state=State.INSTALLED)
        released = [self._release(source_host, instance_uuid, result)
                    for result in pulled]
        if all(released):
            record.remove()
        return True

    def _release(self, source_host, instance_uuid, result):
        """Ask the source to drop a stash we installed; False if it did not.

        A stash installed here and not released is asked again by
        ``retry_pending`` (the pull finds it in the ledger and only
        releases), until ``stash_expiry``.
        """
        if result.released:
            return True  # the source has no such stash any more
        try:
            self.host.rpcapi.release({}, source_host, instance_uuid,
                                     result.stash_id, result.sha256s,
                                     transfer_token=result.transfer_token,
                                     puller_host=self.host.host)
            return True
        except Exception as e:
            LOG.warning('Console log of instance %s is installed, but %s did '
                        'not release its stash %s: %s (asked again later; '
                        'it expires there)', instance_uuid, source_host,
                        result.stash_id, str(e)[:300])
            return False
