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

"""Making a stash: a chain's files moved in, all or nothing.

A stash is made, and given back, by ``os.rename`` of every file: never a
copy, so a QEMU still writing through virtlogd keeps writing into the moved
inode, and never across filesystems (``EXDEV`` is refused with a clear
error). The manifest is written last; a failure half-way moves back what
had moved.
"""

import errno
import functools
import os
import shutil
import time

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog.stash import manifest as cl_manifest

LOG = logging.getLogger(__name__)


def move_names(names, src_dir, dst_dir):
    """Rename ``names`` from ``src_dir`` to ``dst_dir``; all or nothing.

    Returns the names moved (a name that vanished meanwhile is skipped).
    On an error the names already moved are moved back and the error is
    raised.
    """
    moved = []
    try:
        for name in names:
            try:
                os.rename(os.path.join(src_dir, name),
                          os.path.join(dst_dir, name))
            except FileNotFoundError:
                continue
            moved.append(name)
    except OSError:
        for name in reversed(moved):
            try:
                os.rename(os.path.join(dst_dir, name),
                          os.path.join(src_dir, name))
            except OSError as undo:
                LOG.error('Could not move %s back from %s to %s: %s',
                          name, dst_dir, src_dir, undo)
        raise
    return moved


def typed_io(method):
    """Turn a stray OSError into StashFailed: callers get typed errors."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as e:
            owner = args[0]
            instance = getattr(owner, 'instance_uuid', None) or (
                args[1] if len(args) > 1 else kwargs.get('instance_uuid'))
            raise exception.StashFailed(instance=instance, reason=str(e))
    return wrapper


def make(stash_cls, instance_uuid, chain, stash_id, live_names, root, conf,
         destination, hold):
    """Move every member of ``chain`` into a new stash; see Stash.create."""
    instance_uuid = cl_manifest.check_uuid(instance_uuid)
    stash_id = cl_manifest.check_stash_id(
        cl_manifest.new_stash_id() if stash_id is None else stash_id)
    live_names = tuple(live_names)
    if not all(isinstance(n, str) for n in live_names):
        raise exception.InvalidInput(reason='live_names must be names')
    root = root or cl_conf.stash_path(conf)
    files = chain.scan()
    base_offset = chain.base_offset()
    parent = os.path.join(root, instance_uuid)
    path = os.path.join(parent, stash_id)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise exception.InvalidInput(
            reason='stash %s of instance %s exists already' % (
                stash_id, instance_uuid))
    except OSError as e:
        raise exception.StashFailed(instance=instance_uuid,
                                    reason='cannot create %s: %s' % (
                                        path, e))
    try:
        if os.stat(path).st_dev != os.stat(chain.directory).st_dev:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        names = [f.name for f in files]
        if os.path.lexists(os.path.join(chain.directory,
                                        cl_chain.BASE_OFFSET_NAME)):
            names.append(cl_chain.BASE_OFFSET_NAME)
        moved = move_names(names, chain.directory, path)
        try:
            cl_chain.fsync_dir(path)
            cl_chain.fsync_dir(chain.directory)
            stashed = cl_chain.ConsoleLogChain(
                path, log_name=chain.log_name, instance=instance_uuid,
                conf=conf)
            manifest = {
                'version': cl_manifest.MANIFEST_VERSION,
                'instance_uuid': instance_uuid,
                'stash_id': stash_id,
                'created': time.time(),
                'source': chain.directory,
                'log_name': chain.log_name,
                'base_offset': base_offset,
                'block_size': hashlist.BLOCK_SIZE,
                'files': [cl_manifest.file_entry(
                    stashed, f, f.name in live_names)
                    for f in files if f.name in moved],
                'live_names': list(live_names),
                'destination': destination,
                'hold': hold,
                'state': cl_manifest.STATE_STASHED,
            }
            cl_manifest.write(path, manifest)
        except (OSError, exception.ConsoleLogError):
            move_names(moved, path, chain.directory)
            raise
    except exception.ConsoleLogError as e:
        shutil.rmtree(path, ignore_errors=True)
        raise exception.StashFailed(instance=instance_uuid,
                                    reason=str(e)) from e
    except OSError as e:
        shutil.rmtree(path, ignore_errors=True)
        if e.errno == errno.EXDEV:
            raise exception.InvalidInput(
                reason='the stash directory %s is not on the same '
                       'filesystem as %s: console logs are moved, never '
                       'copied; set [consolelog] stash_path on the '
                       'instances filesystem' % (root, chain.directory))
        raise exception.StashFailed(instance=instance_uuid,
                                    reason=str(e))
    LOG.info('Moved %d console-log file(s) of instance %s to stash %s',
             len(manifest['files']), instance_uuid, stash_id)
    return stash_cls(root, instance_uuid, stash_id, manifest, conf=conf)
