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

"""The rotation catcher's part in a hand-over over a shared instance path.

Between the move aside in ``pre_live_migration`` and the import, the
source's virtlogd may roll over into the shared instance directory; the
destination's QEMU start then unlinks that file (see ``catcher``). A
``RotationCatcher`` runs on the destination for that window: started
before the chain moves, finished by the import (its files adopted as the
newest history) or by the rollback. Meanwhile console reads include what
it keeps (``caught_tail``).
"""

import os
import stat

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import catcher as cl_catcher
from nova_consolelog import fileutils

LOG = logging.getLogger(__name__)

# Under the stash root: files a RotationCatcher keeps during a hand-over.
CATCH_DIR = '.catch'


class Catchers:
    """The running catchers of one host, one per instance at most."""

    def __init__(self, host):
        self.host = host
        # instance uuid -> RotationCatcher, from pre_live_migration on a
        # shared path until the import or the rollback.
        self._running = {}

    @property
    def root(self):
        return os.path.join(self.host.stash_root, CATCH_DIR)

    def start(self, instance_uuid, chain):
        """Watch the shared directory until the import; see catcher."""
        old = self._running.pop(instance_uuid, None)
        if old is not None:
            old.cleanup()
        if not os.path.isdir(chain.directory):
            return
        keep_dir = os.path.join(self.root, '%s-%s' % (
            instance_uuid, uuidutils.generate_uuid(dashed=False)[:8]))
        watcher = cl_catcher.RotationCatcher(chain.directory, keep_dir,
                                             chain.log_name)
        try:
            self._running[instance_uuid] = watcher.start()
        except OSError as e:
            watcher.cleanup()
            LOG.warning('Instance %s: cannot watch %s (%s); if the source\'s '
                        'virtlogd rolls over before this host\'s QEMU starts, '
                        'its last lines are lost', instance_uuid,
                        chain.directory, e)

    def adopt(self, instance_uuid, chain):
        """Take in what the catcher kept as the newest history (locked)."""
        watcher = self._running.pop(instance_uuid, None)
        if watcher is None:
            return
        try:
            orphans = watcher.finish()
            if orphans:
                names = chain.adopt_as_history(orphans)
                LOG.info('Instance %s: the source\'s virtlogd rolled over '
                         'before this host\'s QEMU started, which unlinked '
                         'the new file; kept it as %s', instance_uuid,
                         ', '.join(names))
        finally:
            watcher.cleanup()

    def caught_tail(self, instance_uuid, stashes, max_bytes, read):
        """The last bytes of files a RotationCatcher keeps (shared path).

        Only the catcher's hard link (under ``<stash_path>/.catch/``,
        shared too) holds the source's last lines after a rollover until
        the import adopts them. They are newer than the stash and older
        than what the instance directory holds now. Only caught files no
        other name holds any more are read (a file still in the instance
        directory or a stash is read there), and none that the instance
        directory's read had (``read``: its inodes), which virtlogd may
        have unlinked since. Call under the hand-over lock.
        """
        try:
            dirs = [d for d in os.listdir(self.root)
                    if d.startswith(instance_uuid + '-')]
        except FileNotFoundError:
            return b''
        seen = set(read)
        for directory in [s.path for s in stashes]:
            seen.update(_inodes(directory))
        found = []
        for d in dirs:
            keep_dir = os.path.join(self.root, d)
            if not fileutils.is_real_dir(keep_dir):
                continue
            for name in os.listdir(keep_dir):
                path = os.path.join(keep_dir, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                # Only files nobody else holds: the catcher also links the
                # files virtlogd creates or renames in the instance
                # directory later on, which are newer than the read of that
                # directory and, while still there, not ours to show.
                if (st.st_dev, st.st_ino) in seen or not st.st_size or \
                        not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    continue
                found.append((st.st_mtime_ns, name, path))
        return _tails([path for _m, _n, path in sorted(found)], max_bytes)


def _inodes(directory):
    """``{(dev, ino)}`` of the names in ``directory`` (none if it is gone)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return set()
    found = set()
    for name in names:
        try:
            st = os.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def _tails(paths, max_bytes):
    """The last ``max_bytes`` of the files ``paths`` (oldest first) joined."""
    parts = []
    wanted = max_bytes
    for path in reversed(paths):
        if wanted <= 0:
            break
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
        try:
            size = os.fstat(fd).st_size
            n = min(wanted, size)
            parts.append(os.pread(fd, n, size - n))
        finally:
            os.close(fd)
        wanted -= n
    return b''.join(reversed(parts))
