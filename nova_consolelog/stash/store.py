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

"""``Stash``: one instance's console-log chain moved aside, and the store.

Making a stash (the renames are in ``moves``), finding stashes,
deleting one and expiring the old ones. Grants, pins, a resize's held
stash (``holds``) and giving a stash back have modules of their own;
``Stash`` offers them as methods.
"""

import os
import shutil
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist
from nova_consolelog.stash import grants
from nova_consolelog.stash import holds
from nova_consolelog.stash import install
from nova_consolelog.stash import manifest as cl_manifest
from nova_consolelog.stash import moves
from nova_consolelog.stash import pins

LOG = logging.getLogger(__name__)


class Stash(holds.HeldStash):
    """One stash of one instance's console-log chain.

    :param conf: ConfigOpts with our options registered; a stash reads
        ``[consolelog] log_name`` (for a manifest without one) and gives
        ``conf`` to the chain over its directory.
    """

    def __init__(self, root, instance_uuid, stash_id, manifest, conf):
        if conf is None:
            raise TypeError('Stash needs a conf')
        self.conf = conf
        self.root = root
        self.instance_uuid = instance_uuid
        self.stash_id = stash_id
        self.manifest = manifest

    def __repr__(self):
        return 'Stash(%s, %s)' % (self.instance_uuid, self.stash_id)

    # -- what the manifest says ------------------------------------------

    @property
    def path(self):
        return os.path.join(self.root, self.instance_uuid, self.stash_id)

    @property
    def created(self):
        return self.manifest['created']

    @property
    def state(self):
        return self.manifest['state']

    @property
    def live_names(self):
        """Names a running QEMU may still have been writing when stashed."""
        return tuple(self.manifest.get('live_names', ()))

    @property
    def log_name(self):
        return self.manifest.get('log_name') or self.conf.consolelog.log_name

    @property
    def destination(self):
        """The only host a pull of this stash is granted to, or None."""
        return self.manifest.get('destination')

    @property
    def chain(self):
        """A ConsoleLogChain over the stash directory."""
        return cl_chain.ConsoleLogChain(self.path, log_name=self.log_name,
                                        instance=self.instance_uuid,
                                        conf=self.conf)

    def age(self, now=None):
        """Seconds since the stash was made."""
        return (time.time() if now is None else now) - self.created

    def total_size(self):
        """Bytes held now (files may have grown since the manifest)."""
        try:
            return sum(f.size for f in self.chain.scan())
        except exception.ConsoleLogError:
            return sum(f['size'] for f in self.manifest.get('files', ()))

    def base_offset(self):
        return self.chain.base_offset()

    # -- making, finding -------------------------------------------------

    @classmethod
    def create(cls, instance_uuid, chain, stash_id=None, live_names=(),
               root=None, *, conf, destination=None, hold=None):
        """Move every member of ``chain`` into a new stash.

        ``live_names``: members a running QEMU may still write (recorded in
        the manifest; no checksum is trusted for them, every other file
        gets its hash list). ``destination``: the only host a transfer of
        this stash is granted to (see ``grant``). ``hold``: what the stash
        waits for besides its destination's install (``HOLD_CONFIRM``: a
        resize's confirm; see ``settle_install``). Raises
        InstanceDirNotFound, InvalidInput (bad ids, a stash on another
        filesystem, an existing stash id) or StashFailed (anything else; the
        moved files are moved back first).
        """
        return moves.make(cls, instance_uuid, chain, stash_id, live_names,
                          root, conf, destination, hold)

    @classmethod
    @moves.typed_io
    def load(cls, instance_uuid, stash_id, root=None, *, conf):
        """The stash ``stash_id`` of an instance; StashNotFound if none."""
        instance_uuid = cl_manifest.check_uuid(instance_uuid)
        cl_manifest.check_stash_id(stash_id)
        root = root or cl_conf.stash_path(conf)
        path = os.path.join(root, instance_uuid, stash_id)
        if not (fileutils.is_real_dir(os.path.dirname(path)) and
                fileutils.is_real_dir(path)):
            # A symlink planted as the instance's or the stash's directory
            # is never followed: it is not a stash of ours.
            raise exception.StashNotFound(stash_id=stash_id,
                                          instance=instance_uuid)
        try:
            manifest = cl_manifest.read(path, instance_uuid, stash_id)
        except FileNotFoundError:
            # Released (by another thread or process) since the check
            # above: a stash that is gone, not a failure.
            raise exception.StashNotFound(stash_id=stash_id,
                                          instance=instance_uuid)
        return cls(root, instance_uuid, stash_id, manifest, conf=conf)

    @classmethod
    @moves.typed_io
    def list(cls, instance_uuid=None, root=None, *, conf):
        """Stashes of one instance (or of all), oldest first."""
        root = root or cl_conf.stash_path(conf)
        if instance_uuid is not None:
            uuids = [cl_manifest.check_uuid(instance_uuid)]
        else:
            try:
                uuids = [n for n in os.listdir(root)
                         if uuidutils.is_uuid_like(n) and
                         n == str(uuid.UUID(n))]
            except FileNotFoundError:
                return []
        found = []
        for inst in uuids:
            parent = os.path.join(root, inst)
            if not fileutils.is_real_dir(parent):
                continue
            try:
                names = os.listdir(parent)
            except FileNotFoundError:
                continue  # its last stash released meanwhile
            for name in names:
                if cl_manifest.STASH_ID_RE.fullmatch(name) and \
                        fileutils.is_real_dir(os.path.join(parent, name)):
                    try:
                        found.append(cls.load(inst, name, root=root,
                                              conf=conf))
                    except exception.StashNotFound:
                        continue  # released meanwhile
        return sorted(found, key=lambda s: (s.created, s.stash_id))

    @classmethod
    def pin(cls, instance_uuid, chain, stash_root, host=None, *, conf):
        """Pin the live chain for one pull; see ``pins``."""
        return pins.pin(cls, instance_uuid, chain, stash_root, host, conf)

    # -- handing it over (RPC 1.3) ---------------------------------------

    def transfer_files(self):
        """``[entry]`` of the files as pulled: name, kind, size, blocks.

        Sizes and hash lists are those of the manifest: a pull reads
        exactly those bytes. A stash without them (made by an earlier
        release, or incomplete after a crash) gets them now, once, and
        keeps them. Call under the hand-over lock, exclusively.

        :raises InvalidInput: a file a running QEMU may still write (a
            stash of a shared instance path, which the destination installs
            from the shared storage, never by a pull).
        """
        live = set(self.live_names)
        if live:
            raise exception.InvalidInput(
                reason='stash %s may still be written by a running QEMU '
                       '(%s); it is installed from the shared instance '
                       'path, not pulled' % (self.stash_id,
                                             ', '.join(sorted(live))))
        entries = self.manifest.get('files') or []
        on_disk = {f.name: f for f in self.chain.scan()}
        if (self.manifest.get('block_size') and
                self.manifest.get('state') == cl_manifest.STATE_STASHED and
                all('blocks' in e for e in entries) and
                set(on_disk) == {e['name'] for e in entries}):
            return entries
        chain = self.chain
        entries = [cl_manifest.file_entry(chain, f, False)
                   for f in on_disk.values()]
        self._rewrite_manifest(block_size=hashlist.BLOCK_SIZE,
                               files=entries,
                               state=cl_manifest.STATE_STASHED)
        return entries

    def grant(self, host):
        """A release token for a pull by ``host``; see ``grants.grant``."""
        return grants.grant(self, host)

    def check_release(self, host, token, roots):
        """HandoverRefused unless ``host`` may release; see ``grants``."""
        grants.check_release(self, host, token, roots)

    def _rewrite_manifest(self, **changes):
        manifest = dict(self.manifest)
        manifest.update(changes)
        cl_manifest.write(self.path, manifest)
        self.manifest = manifest

    # -- giving it back, deleting it -------------------------------------

    def restore(self, directory):
        """Move the files back after a rollback; see ``install.restore``."""
        return install.restore(self, directory)

    def install_as_history(self, chain, release=True):
        """Copy in as one history file; see ``install.install_as_history``."""
        return install.install_as_history(self, chain, release=release)

    @moves.typed_io
    def release(self):
        """Delete the stash and its files."""
        shutil.rmtree(self.path)
        try:
            os.rmdir(os.path.dirname(self.path))
        except OSError:
            pass  # other stashes of the instance remain


def expire(max_age, root=None, *, conf, now=None):
    """Delete stashes older than ``max_age`` seconds, with a warning each.

    Returns ``[(instance_uuid, stash_id, bytes)]`` of the stashes deleted.
    """
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) \
            or max_age < 0:
        raise exception.InvalidInput(
            reason='max_age must be a non-negative number, not %r' % (
                max_age,))
    expired = []
    for stash in Stash.list(root=root, conf=conf):
        if stash.age(now) <= max_age:
            continue
        size = stash.total_size()
        try:
            stash.release()
        except exception.StashFailed as e:
            LOG.warning('Could not delete expired console-log stash %s of '
                        'instance %s: %s', stash.stash_id,
                        stash.instance_uuid, e)
            continue
        if pins.is_pin_id(stash.stash_id):
            # Hard links to a live chain: nothing of the chain is lost.
            LOG.info('Removed console-log pin %s of instance %s: its pull '
                     'did not release it within %ss', stash.stash_id,
                     stash.instance_uuid, max_age)
        else:
            LOG.warning('Deleted console-log stash %s of instance %s: %d '
                        'byte(s) of console output never collected by a '
                        'destination within %ss', stash.stash_id,
                        stash.instance_uuid, size, max_age)
        expired.append((stash.instance_uuid, stash.stash_id, size))
    return expired
