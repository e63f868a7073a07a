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

"""The staging file of an import: its name, its owner, its progress.

* **Staged, then renamed.** The bytes go into a staging file
  ``.console.history.partial-<id>`` (the concatenation of the source
  files, oldest first, minus the oldest bytes beyond
  ``history_max_bytes``, cut at a block boundary). Progress is recorded in
  ``<staging>.json`` after an fsync, so an interrupted import resumes.
* **One owner.** A pull owns the staging file by an ``flock`` on it; a
  second pull of the same source chain on this host waits for the first
  (and then finds it installed) instead of truncating its file. Nothing
  opens a staging file with ``O_TRUNC`` without holding the lock.

Staging files nobody holds any more are removed by ``remove_abandoned``.
"""

import errno
import fcntl
import json
import os
import time

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import import_ledger
from nova_consolelog import names

LOG = logging.getLogger(__name__)

PARTIAL_PREFIX = '.console.history.partial-'
SIDECAR_SUFFIX = '.json'
# Seconds between two tries of a staging file another pull holds.
_LOCK_POLL = 0.1


_unlink_quietly = fileutils.unlink_quietly


def lock_staging(chain, staging, import_id, wait):
    """Open and flock ``staging``: ``(fd, fstat)``, the file ours alone.

    Waits up to ``wait`` seconds for another pull holding it
    (ImportInProgress after that). The file locked is the one at the path:
    an owner before us may have renamed (committed) or removed the file
    we opened, and then we open it anew.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(staging, os.O_RDWR | os.O_CREAT |
                         os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise exception.UnsafeChainFile(path=staging,
                                                reason='a symbolic link')
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise exception.ImportInProgress(
                    import_id=import_id,
                    directory=chain.directory)
            time.sleep(_LOCK_POLL)
            continue
        try:
            st = os.fstat(fd)
            try:
                now = os.lstat(staging)
            except FileNotFoundError:
                now = None
        except OSError:
            os.close(fd)
            raise
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev,
                                                       st.st_ino):
            # The owner before us renamed (committed) or removed it.
            os.close(fd)
            continue
        return fd, st


def load_sidecar(sidecar, state):
    """The durable watermark saved in ``sidecar`` for ``state``, or None.

    None when there is none, it is unreadable, or it is for other files
    (another state): the import then starts over.
    """
    try:
        saved = fileutils.load_json(sidecar)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, exception.ConsoleLogError) as e:
        LOG.warning('Ignoring unreadable import progress %s: %s',
                    sidecar, e)
        return None
    if not isinstance(saved, dict):
        return None
    durable = saved.pop('durable', None)
    if saved != state or not isinstance(durable, dict):
        LOG.info('Import progress %s is for other files; starting over',
                 sidecar)
        return None
    return durable


def save_sidecar(chain, sidecar, state, durable):
    """Save the durable watermark ``durable`` of ``state`` in ``sidecar``.

    Atomically (``chain.write_state``): a crash leaves the old watermark
    or the new one, which ``load_sidecar`` reads back for the same state.
    """
    saved = dict(state, durable=durable)
    chain.write_state(os.path.basename(sidecar),
                      json.dumps(saved, sort_keys=True).encode('utf-8'))


def remove_abandoned(chain, older_than):
    """Delete staging files nobody holds, untouched for ``older_than`` s.

    A staging file another pull holds (its flock) is left alone. Returns
    the names removed.
    """
    names.check_count('older_than', older_than)
    try:
        listed = os.listdir(chain.directory)
    except (FileNotFoundError, NotADirectoryError):
        raise exception.InstanceDirNotFound(path=chain.directory)
    removed = []
    now = time.time()
    for name in sorted(listed):
        if not name.startswith(PARTIAL_PREFIX):
            continue
        path = chain.path(name)
        if name.endswith(SIDECAR_SUFFIX):
            # Progress whose staging file is gone (its removal failed
            # after an install): nothing can resume from it.
            staging = path[:-len(SIDECAR_SUFFIX)]
            try:
                old = now - os.lstat(path).st_mtime >= older_than
            except OSError:
                continue
            if old and not os.path.lexists(staging) and \
                    _unlink_quietly(path):
                removed.append(name)
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                         os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if now - st.st_mtime < older_than:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a pull is working on it
            # An install that wrote its ledger entry and died before the
            # rename: the entry must go with the file, or the import would
            # pass for installed.
            import_ledger.Ledger(chain).forget_inode(st.st_ino)
            if _unlink_quietly(path):
                removed.append(name)
            if name + SIDECAR_SUFFIX not in listed and _unlink_quietly(
                    path + SIDECAR_SUFFIX):
                removed.append(name + SIDECAR_SUFFIX)
        finally:
            os.close(fd)
    if removed:
        LOG.info('Removed abandoned console-log imports in %s: %s',
                 chain.directory, ', '.join(removed))
    return removed
