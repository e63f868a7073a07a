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

"""Another host's chain arriving as one history file, exactly once.

Our promise is that no byte of console output is lost, duplicated or
installed unverified, whatever crashes and whoever else runs. So:

* **Staged, then renamed.** The bytes go into a staging file
  ``.console.history.partial-<id>`` (the concatenation of the source
  files, oldest first, minus the oldest bytes beyond
  ``history_max_bytes``, cut at a block boundary). Progress is recorded in
  ``<staging>.json`` after an fsync, so an interrupted import resumes.
  ``commit`` renames the staging file to the next ``console.history.<seq>``:
  until then nothing visible has changed.
* **One owner.** A pull owns the staging file by an ``flock`` on it; a
  second pull of the same source chain on this host waits for the first
  (and then finds it installed) instead of truncating its file. Nothing
  opens a staging file with ``O_TRUNC`` without holding the lock.
* **Verified on disk.** Before the rename every block of the staging file —
  resumed parts included — is read back and checked against the source's
  hash list, obtained over RPC (never from a bulk frame). A block that does
  not match is reported (``verify``) for the puller to fetch again.
* **Exactly once.** Before the rename, the import id and the staging file's
  inode go into the *ledger* (``.console.history.ledger`` in the instance
  directory). An import whose ledger entry exists while the staging path no
  longer holds that inode was renamed: a re-run, a retry after a crash
  between the rename and the release, or a concurrent pull finds it
  installed and only releases the source's stash (``import_ledger``).
"""

import errno
import fcntl
import hashlib
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


def digests_id(digests):
    """One digest standing for every file's hash list of an import."""
    text = json.dumps(sorted((name, bs, list(blocks))
                             for name, (bs, blocks) in digests.items()))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


class Import:
    """One source chain being installed into ``chain`` as history.

    :param files: ``[(name, size)]`` of the source chain, oldest first.
    :param digests: ``{name: (block_size, [hex sha256 per block])}`` of
        every file with bytes, from the source over RPC.
    :param base_offset: the source chain's base offset.
    :param wait: seconds to wait for another pull of the same import.

    ``installed`` is the history name when the ledger says this import is
    in place already (nothing to fetch; only the release is left).
    """

    def __init__(self, chain, import_id, files, digests, base_offset=0,
                 wait=0):
        chain.check_import_id(import_id)
        names.check_count('base_offset', base_offset)
        self.chain = chain
        self.import_id = import_id
        self.base_offset = base_offset
        self.files = self._check_files(files)
        self.digests = self._check_digests(digests)
        self.size = sum(size for _name, size in self.files)
        self.staging = chain.path(PARTIAL_PREFIX + import_id)
        self.sidecar = self.staging + SIDECAR_SUFFIX
        self.ledger = import_ledger.Ledger(chain)
        self._layout = {}
        position = 0
        for name, size in self.files:
            self._layout[name] = (position, size)
            position += size
        self.skip = self._aligned_skip()
        self._written = {}
        self._durable = {}
        self._checked = {name: set() for name, _size in self.files}
        self._fd = None
        self._failure = None
        self.installed = None
        try:
            self._acquire(wait)
        except OSError as e:
            self._close()
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))

    # -- checks ----------------------------------------------------------

    def _check_files(self, files):
        try:
            files = [(name, size) for name, size in files]
        except (TypeError, ValueError):
            raise exception.InvalidInput(
                reason='files must be a list of (name, size) pairs')
        seen = set()
        for name, size in files:
            self.chain.check_member_name(name)
            names.check_count('size of %s' % name, size)
            if name in seen:
                raise exception.InvalidInput(
                    reason='%s is listed twice' % name)
            seen.add(name)
        return files

    def _check_digests(self, digests):
        if not isinstance(digests, dict):
            raise exception.InvalidInput(reason='digests must be a dict')
        for name, size in self.files:
            if not size:
                continue
            try:
                block_size, blocks = digests[name]
            except (KeyError, TypeError, ValueError):
                raise exception.InvalidInput(
                    reason='no hash list for %s' % name)
            names.check_count('block size of %s' % name, block_size)
            if block_size < 1 or not isinstance(blocks, (list, tuple)) or (
                    len(blocks) != (size + block_size - 1) // block_size):
                raise exception.InvalidInput(
                    reason='the hash list of %s does not cover %d bytes' % (
                        name, size))
        return {name: digests[name] for name, size in self.files if size}

    def _aligned_skip(self):
        """Bytes left out: beyond ``history_max_bytes``, block-aligned.

        The first kept byte starts a block of its file, so that every kept
        block is checked on disk whole.
        """
        skip = max(0, self.size -
                   self.chain.conf.consolelog.history_max_bytes)
        for name, (position, size) in self._layout.items():
            if position <= skip < position + size:
                block_size = self.digests[name][0]
                return position + (skip - position) // block_size * \
                    block_size
        return skip

    # -- ownership -------------------------------------------------------

    def _acquire(self, wait):
        """Lock the staging file, or find the import installed."""
        if not fileutils.is_real_dir(self.chain.directory):
            raise exception.InstanceDirNotFound(path=self.chain.directory)
        deadline = time.monotonic() + wait
        while True:
            try:
                fd = os.open(self.staging, os.O_RDWR | os.O_CREAT |
                             os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise exception.UnsafeChainFile(path=self.staging,
                                                    reason='a symbolic link')
                raise exception.InstallFailed(instance=self.chain.instance,
                                              reason=str(e))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise exception.ImportInProgress(
                        import_id=self.import_id,
                        directory=self.chain.directory)
                time.sleep(_LOCK_POLL)
                continue
            self._fd = fd
            st = os.fstat(fd)
            try:
                now = os.lstat(self.staging)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev,
                                                           st.st_ino):
                # The owner before us renamed (committed) or removed it.
                self._close()
                continue
            break
        try:
            fileutils.check_regular(self.staging, st.st_mode)
            installed = self.ledger.installed(self.import_id)
            if installed:
                # Renamed into place by an earlier run: this file is a
                # new, empty one of ours.
                self.installed = installed
                _unlink_quietly(self.staging)
                _unlink_quietly(self.sidecar)
                self._close()
                LOG.info('Console-log import %s is in %s already (%s)',
                         self.import_id, self.chain.directory,
                         self.installed)
                return
            entry = self.ledger.entry(self.import_id)
            if entry is not None and entry.get('ino') != st.st_ino:
                # An install that never got to its rename, whose staging
                # file is gone: nothing of it is in place.
                self.ledger.remove(self.import_id)
            self._resume()
        except BaseException:
            self._close()
            raise

    def _state(self):
        return {'import_id': self.import_id,
                'files': [list(f) for f in self.files],
                'base_offset': self.base_offset,
                'digests_id': digests_id(self.digests),
                'skip': self.skip}

    def _resume(self):
        saved = self._load_sidecar()
        if saved is None:
            # We hold the lock: nobody else writes this file.
            _unlink_quietly(self.sidecar)
            os.ftruncate(self._fd, 0)
        else:
            self._durable = saved
            for name, upto in saved.items():
                self._written[name] = [(0, upto)]
            LOG.info('Resuming the console-log import %s into %s',
                     self.import_id, self.chain.directory)
        try:
            os.ftruncate(self._fd, self.size - self.skip)
        except OSError as e:
            self._fail(e)

    def _load_sidecar(self):
        try:
            saved = fileutils.load_json(self.sidecar)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, exception.ConsoleLogError) as e:
            LOG.warning('Ignoring unreadable import progress %s: %s',
                        self.sidecar, e)
            return None
        if not isinstance(saved, dict):
            return None
        durable = saved.pop('durable', None)
        if saved != self._state() or not isinstance(durable, dict):
            LOG.info('Import progress %s is for other files; starting over',
                     self.sidecar)
            return None
        for name, upto in durable.items():
            if name not in self._layout or isinstance(upto, bool) or (
                    not isinstance(upto, int)) or (
                    not 0 <= upto <= self._layout[name][1]):
                return None
        return durable

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_fd(self):
        if self._fd is None:
            if self._failure is not None:
                # Aborted by a full disk: every writer learns why.
                raise exception.InstallFailed(instance=self.chain.instance,
                                              reason=self._failure)
            raise exception.InvalidInput(
                reason='import %s is closed' % self.import_id)
        return self._fd

    # -- writing ---------------------------------------------------------

    def _range(self, name):
        if name not in self._layout:
            raise exception.InvalidInput(
                reason='%.64r is not a file of import %s' % (
                    name, self.import_id))
        position, size = self._layout[name]
        first = min(size, max(0, self.skip - position))
        return position, size, first

    def wanted(self, name):
        """``(start, end)`` of source file ``name`` still needed."""
        _position, size, first = self._range(name)
        return max(first, self._durable.get(name, 0)), size

    def write(self, name, offset, data):
        """Store ``data`` found at ``offset`` of source file ``name``.

        Unchecked until ``verify``: the bytes may come from anybody.
        """
        position, size, first = self._range(name)
        names.check_count('offset', offset)
        if offset + len(data) > size:
            raise exception.InvalidInput(
                reason='%d byte(s) at %d do not fit in %s (%d bytes)' % (
                    len(data), offset, name, size))
        fd = self._open_fd()
        if offset < first:
            data = data[first - offset:]
            offset = first
        if not data:
            return
        target = position + offset - self.skip
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, target)
                view = view[written:]
                target += written
        except OSError as e:
            self._fail(e)
        self._written.setdefault(name, []).append((offset,
                                                   offset + len(data)))
        block_size = self.digests[name][0]
        checked = self._checked[name]
        for index in range(offset // block_size,
                           (offset + len(data) - 1) // block_size + 1):
            checked.discard(index)

    def checkpoint(self, name, upto):
        """Record durably that ``[0, upto)`` of ``name`` is written.

        A resumed import does not fetch these bytes again (it still checks
        them on disk before the rename).
        """
        _position, size, _first = self._range(name)
        names.check_count('upto', upto)
        if upto > size:
            raise exception.InvalidInput(
                reason='%s has only %d bytes, not %d' % (name, size, upto))
        fd = self._open_fd()
        if upto <= self._durable.get(name, 0):
            return
        try:
            os.fsync(fd)
            self._durable[name] = upto
            state = self._state()
            state['durable'] = self._durable
            self.chain.write_state(os.path.basename(self.sidecar),
                                   json.dumps(state, sort_keys=True).encode(
                                       'utf-8'))
        except OSError as e:
            self._fail(e)

    def _fail(self, error):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            self._failure = str(error)
            self.abort()
        raise exception.InstallFailed(instance=self.chain.instance,
                                      reason=str(error))

    def missing(self):
        """{name: [(start, end)]} of bytes not written yet."""
        result = {}
        for name, (_position, size) in self._layout.items():
            _p, _s, first = self._range(name)
            holes = []
            at = first
            for lo, hi in sorted(self._written.get(name, [])):
                if lo > at:
                    holes.append((at, min(lo, size)))
                at = max(at, hi)
            if at < size:
                holes.append((at, size))
            if holes:
                result[name] = holes
        return result

    # -- checking on disk ------------------------------------------------

    def verify(self):
        """Check every written, unchecked block on disk.

        Returns ``[(name, start, end)]`` of the blocks that do not match
        the source's hash list; they count as not written (fetch them
        again). Reads the staging file, never memory.
        """
        fd = self._open_fd()
        try:
            os.fsync(fd)
        except OSError as e:
            self._fail(e)
        bad = []
        missing = self.missing()
        for name, (position, size) in self._layout.items():
            if not size:
                continue
            _p, _s, first = self._range(name)
            block_size, blocks = self.digests[name]
            holes = missing.get(name, [])
            for index in range(-(-first // block_size), len(blocks)):
                if index in self._checked[name]:
                    continue
                lo = index * block_size
                hi = min(lo + block_size, size)
                if any(h_lo < hi and lo < h_hi for h_lo, h_hi in holes):
                    continue  # not all there yet
                try:
                    actual = self._read_digest(fd, position + lo - self.skip,
                                               hi - lo)
                except OSError as e:
                    self._fail(e)
                if actual == blocks[index]:
                    self._checked[name].add(index)
                    continue
                bad.append((name, lo, hi))
                self._forget(name, lo, hi)
        return bad

    def _read_digest(self, fd, offset, length):
        digest = hashlib.sha256()
        while length > 0:
            data = os.pread(fd, min(fileutils.COPY_CHUNK, length), offset)
            if not data:
                break
            digest.update(data)
            offset += len(data)
            length -= len(data)
        return digest.hexdigest()

    def _forget(self, name, lo, hi):
        """Bytes [lo, hi) of ``name`` are wrong: count them as missing."""
        kept = []
        for w_lo, w_hi in self._written.get(name, []):
            if w_lo < lo:
                kept.append((w_lo, min(w_hi, lo)))
            if w_hi > hi:
                kept.append((max(w_lo, hi), w_hi))
        self._written[name] = kept
        if self._durable.get(name, 0) > lo:
            self._durable[name] = lo

    def complete(self):
        """True when every byte is written and checked on disk."""
        if self.missing():
            return False
        for name, (_position, size) in self._layout.items():
            if not size:
                continue
            _p, _s, first = self._range(name)
            block_size, blocks = self.digests[name]
            wanted = set(range(-(-first // block_size), len(blocks)))
            if not wanted <= self._checked[name]:
                return False
        return True

    # -- installing ------------------------------------------------------

    def commit(self):
        """Install the staging file as the next history file.

        Only a ``complete`` import is installed. Returns its name. Either
        the chain is as before (and InstallFailed is raised) or the history
        is in place, with the ledger naming it; retention then drops old
        history.
        """
        fd = self._open_fd()
        if self.verify() or not self.complete():
            raise exception.InstallFailed(
                instance=self.chain.instance,
                reason='bytes not written or not matching the source: %s' %
                str(self.missing())[:200])
        chain = self.chain
        try:
            name = chain.next_history_name()
            had_history = bool(chain.history())
            old_base = chain.base_offset()
        except exception.InstallFailed:
            raise
        except exception.ConsoleLogError as e:
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))
        target = chain.path(name)
        new_base = old_base if had_history else self.base_offset + self.skip
        base_changed = new_base != old_base
        try:
            st = os.fstat(fd)
            if os.path.lexists(target):
                raise exception.InstallFailed(
                    instance=chain.instance, reason='%s appeared' % name)
            if base_changed:
                chain.set_base_offset(new_base)
            self.ledger.add(self.import_id, name=name, ino=st.st_ino,
                            digests_id=digests_id(self.digests))
            os.rename(self.staging, target)
            try:
                chain.fsync()
            except OSError:
                os.rename(target, self.staging)
                raise
        except (OSError, exception.ConsoleLogError) as e:
            self._undo_commit(base_changed, old_base)
            if isinstance(e, exception.InstallFailed):
                raise
            if isinstance(e, OSError):
                self._fail(e)
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))
        self._close()
        _unlink_quietly(self.sidecar)
        self.installed = name
        if self.skip:
            LOG.warning('Imported console-log history of instance %s '
                        'without its oldest %d byte(s): more than '
                        'history_max_bytes (%d)', chain.instance, self.skip,
                        chain.conf.consolelog.history_max_bytes)
        try:
            chain.apply_retention(keep=name)
        except (OSError, exception.ConsoleLogError) as e:
            LOG.warning('Console-log history retention in %s failed: %s',
                        chain.directory, e)
        return name

    def _undo_commit(self, base_changed, old_base):
        try:
            if os.path.lexists(self.staging):
                self.ledger.remove(self.import_id)
            if base_changed:
                self.chain.set_base_offset(old_base)
        except (OSError, exception.ConsoleLogError) as undo:
            LOG.error('Could not undo a failed install in %s: %s',
                      self.chain.directory, undo)

    def close(self):
        """Stop for now; ``begin_import`` with the same id resumes."""
        self._close()

    def abort(self):
        """Forget the import: remove the staging file and its progress."""
        if self._fd is not None:
            try:
                self.ledger.forget_inode(os.fstat(self._fd).st_ino)
            except (OSError, exception.ConsoleLogError) as e:
                LOG.warning('Import ledger of %s not updated: %s',
                            self.chain.directory, e)
            _unlink_quietly(self.staging)
            _unlink_quietly(self.sidecar)
        self._close()
        try:
            self.chain.fsync()
        except OSError:
            pass


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
