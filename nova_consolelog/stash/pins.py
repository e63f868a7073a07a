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

"""Pins: a live chain held still for one pull.

A pull of a live chain (``nova-consolelog pull`` without a stash) reads a
pin: hard links to the chain's files as one consistent snapshot saw them,
with their sizes and hash lists at that instant, under
``<stash_path>/.pins/<instance_uuid>/pin-<id>/``. virtlogd may roll over or
truncate the chain meanwhile: the linked inodes keep their first ``size``
bytes (virtlogd only appends, renames and unlinks), so the pull never
splices two files. A pin is a ``Stash`` under another root: it is served,
released and expired like one.
"""

import os
import shutil
import time

from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist
from nova_consolelog.stash import manifest as cl_manifest

# Under the stash root: pins of live chains.
PINS_DIR = '.pins'
PIN_PREFIX = 'pin-'
# Pins at once, per instance and per host (see pin).
MAX_PINS_PER_INSTANCE = 4
MAX_PINS = 64
_PIN_ATTEMPTS = 5


def pin_root(stash_root):
    """Where pins of live chains live, under the stash root."""
    return os.path.join(stash_root, PINS_DIR)


def is_pin_id(stash_id):
    return isinstance(stash_id, str) and stash_id.startswith(PIN_PREFIX)


def pin(stash_cls, instance_uuid, chain, stash_root, host, conf):
    """Pin the live chain for one pull; a ``stash_cls`` under the pin root.

    Call under the hand-over lock (shared is enough: nothing moves).
    """
    instance_uuid = cl_manifest.check_uuid(instance_uuid)
    root = pin_root(stash_root)
    # Nothing is created for an instance this host does not have.
    chain.scan()
    # A pin keeps files virtlogd may have dropped: bounded per instance
    # and per host, whoever asks.
    held = stash_cls.list(root=root, conf=conf)
    if len(held) >= MAX_PINS or len(
            [p for p in held if p.instance_uuid == instance_uuid]) >= \
            MAX_PINS_PER_INSTANCE:
        raise exception.HandoverRefused(
            stash_id='(pin)', instance=instance_uuid,
            reason='%d pulls of live chains are in progress here; try '
                   'again when they are released or expire' % len(held))
    for _attempt in range(_PIN_ATTEMPTS):
        stash_id = PIN_PREFIX + cl_manifest.new_stash_id()
        parent = os.path.join(root, instance_uuid)
        path = os.path.join(parent, stash_id)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        if not fileutils.is_real_dir(root) or \
                not fileutils.is_real_dir(parent):
            raise exception.UnsafeChainFile(path=parent,
                                            reason='not a directory')
        os.mkdir(path, 0o700)
        try:
            manifest = _pin_into(chain, path, instance_uuid, stash_id, host)
        except FileNotFoundError:
            # A file went (virtlogd truncated or rolled over) between
            # the snapshot and its link: take another snapshot.
            shutil.rmtree(path, ignore_errors=True)
            continue
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            try:
                os.rmdir(parent)
            except OSError:
                pass  # other pins of the instance
            raise
        return stash_cls(root, instance_uuid, stash_id, manifest, conf=conf)
    raise exception.StashFailed(instance=instance_uuid,
                                reason='the chain kept changing')


def _pin_into(chain, path, instance_uuid, stash_id, host):
    files = []
    with chain.snapshot() as snap:
        for m in snap.members:
            target = os.path.join(path, m.file.name)
            os.link(chain.path(m.file.name), target, follow_symlinks=False)
            st = os.fstat(m.fd)
            if (os.lstat(target).st_ino, os.lstat(target).st_dev) != (
                    st.st_ino, st.st_dev):
                # virtlogd rolled over since the snapshot: that name is
                # another file now.
                raise FileNotFoundError(target)
            files.append({
                'name': m.file.name, 'kind': m.file.kind,
                'size': m.size, 'mtime': m.file.mtime,
                'blocks': hashlist.fd_blocks(m.fd, m.size)})
    manifest = {
        'version': cl_manifest.MANIFEST_VERSION,
        'instance_uuid': instance_uuid,
        'stash_id': stash_id, 'created': time.time(),
        'source': chain.directory, 'log_name': chain.log_name,
        'base_offset': chain.base_offset(),
        'block_size': hashlist.BLOCK_SIZE, 'files': files,
        'live_names': [], 'destination': host,
        'state': cl_manifest.STATE_STASHED,
    }
    cl_manifest.write(path, manifest)
    return manifest
