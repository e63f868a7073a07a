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

"""Where one host keeps what a hand-over needs, and the lock over it.

``HandoverHost`` is shared by every part of the hand-over on a compute
host: the instances directory (the chains), the stash root (stashes,
hand-over records, the catcher's files), the host's hand-over lock, and
the configuration, which is always passed in.
"""

import os

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import fileutils
from nova_consolelog.handover import record as cl_record
from nova_consolelog import names
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)


class HandoverHost:
    """One compute host's side of every hand-over.

    :param conf: ConfigOpts with our options registered.
    :param host: this compute host's name (nova's ``CONF.host``).
    :param rpcapi: a ``rpc.api.ConsoleLogAPI`` client, or None when this
        host cannot talk to its peers (then only local steps run).
    :param instances_path: directory holding instance directories; defaults
        to ``[consolelog] instances_path``.
    """

    def __init__(self, conf, host, rpcapi, instances_path=None):
        self.conf = conf
        self.host = host
        self.rpcapi = rpcapi
        group = conf.consolelog
        self.instances_path = instances_path or group.instances_path
        self.stash_root = cl_conf.stash_path(
            conf, instances_path=self.instances_path)
        # Per host: on a shared instance path both hosts see one stash root.
        self.records_dir = cl_record.records_dir(self.stash_root, host)

    def chain(self, instance_uuid):
        """The instance's chain in its instance directory here."""
        instance_uuid = names.check_instance_uuid(instance_uuid)
        return cl_chain.ConsoleLogChain(
            os.path.join(self.instances_path, instance_uuid),
            instance=instance_uuid, conf=self.conf)

    def record(self, instance_uuid):
        return cl_record.HandoverRecord(self.records_dir, instance_uuid)

    def records(self):
        """Every hand-over record this host keeps."""
        return cl_record.HandoverRecord.all(self.records_dir)

    def lock(self, instance_uuid, shared=False):
        """The host's hand-over lock; see ``stash.handover_lock``."""
        return cl_stash.handover_lock(self.instances_path, shared=shared)

    def stashes(self, instance_uuid):
        """This host's stashes of an instance, oldest first.

        Without a resize's stash its destination has installed: the
        history there holds those bytes now (on the same host, or through a
        shared stash root, a read would repeat them); the stash only waits
        for the confirm or a revert (see ``held_stashes``).
        """
        return [s for s in self._all_stashes(instance_uuid)
                if not (s.held and s.installed_by is not None)]

    def held_stashes(self, instance_uuid):
        """The stashes of an instance's resize, installed or not."""
        return [s for s in self._all_stashes(instance_uuid) if s.held]

    def _all_stashes(self, instance_uuid):
        return cl_stash.Stash.list(instance_uuid, root=self.stash_root,
                                   conf=self.conf)

    def make_stash(self, instance_uuid, chain, **kwargs):
        """Move ``chain`` into a new stash under this host's stash root."""
        return cl_stash.Stash.create(instance_uuid, chain,
                                     root=self.stash_root, conf=self.conf,
                                     **kwargs)

    def stash_chain(self, instance_uuid, **kwargs):
        """The instance's chain here moved into a new stash, under its lock.

        None when there is no instance directory or nothing in it to keep.
        """
        chain = self.chain(instance_uuid)
        with self.lock(instance_uuid):
            if not fileutils.is_real_dir(chain.directory) or \
                    not chain.scan():
                return None
            return self.make_stash(instance_uuid, chain, **kwargs)

    # -- giving a stash back ---------------------------------------------

    def restore_stashes(self, instance_uuid):
        """Every stash of the instance back into its directory (locked)."""
        chain = self.chain(instance_uuid)
        for stash in self.stashes(instance_uuid):
            os.makedirs(chain.directory, exist_ok=True)
            self.restore(chain, stash)
            LOG.info('Restored console-log stash %s of instance %s',
                     stash.stash_id, instance_uuid)

    def restore(self, chain, stash):
        """Put a stash back after a failed migration, losing nothing.

        The source's QEMU still runs and may still write into the stashed
        ``console.log`` through virtlogd's descriptor, so the stash is
        never copied here. Usually the failed incoming QEMU's virtlogd left
        just an empty ``console.log``: it goes and the files move back
        under their names. Anything else in the way means the source's
        virtlogd has rolled over since the chain moved (on a shared path it
        rotates the names in the instance directory): what is there is
        newer than the stash, so the stash moves in by rename as the newest
        history, which virtlogd never touches. Call under the lock.
        """
        stashed = [f.name for f in stash.chain.scan()]
        taken = [f for f in chain.scan() if f.name in set(stashed)]
        if not taken:
            stash.restore(chain.directory)
            return
        if [(f.name, f.size) for f in taken] == [(chain.log_name, 0)]:
            os.unlink(os.path.join(chain.directory, chain.log_name))
            stash.restore(chain.directory)
            return
        chain.adopt_as_history(
            [os.path.join(stash.path, name) for name in stashed])
        stash.release()
        LOG.warning('Instance %s: the console log was rotated since it was '
                    'moved aside; the moved files are back as history',
                    stash.instance_uuid)
