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

* **Staged, then renamed.** The bytes go into a staging file, owned by
  an ``flock``, whose progress survives a crash (``import_staging``).
  ``commit`` renames the staging file to the next ``console.history.<seq>``:
  until then nothing visible has changed.
* **Verified on disk.** Before the rename every block of the staging file —
  resumed parts included — is read back and checked against the source's
  hash list, obtained over RPC (never from a bulk frame). A block that does
  not match is reported (``verify``) for the puller to fetch again
  (``import_progress``).
* **Exactly once.** Before the rename, the import id and the staging file's
  inode go into the *ledger* (``.console.history.ledger`` in the instance
  directory). An import whose ledger entry exists while the staging path no
  longer holds that inode was renamed: a re-run, a retry after a crash
  between the rename and the release, or a concurrent pull finds it
  installed and only releases the source's stash (``import_ledger``). The
  order of the install's steps, and their undo, is ``history_install``.
* **In its place.** An import owed since before a QEMU start here fills
  the slot reserved for it (``history_slots``).

The names other modules use from here (the staging file's name parts,
``remove_abandoned``, the slot functions) are re-exported.
"""

import errno
import os

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import history_install
from nova_consolelog import history_slots
from nova_consolelog import import_ledger
from nova_consolelog import import_progress
from nova_consolelog import import_staging
from nova_consolelog import names

LOG = logging.getLogger(__name__)

# Re-exported: callers and tests name them from here.
PARTIAL_PREFIX = import_staging.PARTIAL_PREFIX
SIDECAR_SUFFIX = import_staging.SIDECAR_SUFFIX
digests_id = import_progress.digests_id
remove_abandoned = import_staging.remove_abandoned
reserve_slot = history_slots.reserve_slot
is_placeholder = history_slots.is_placeholder
slot_to_fill = history_slots.slot_to_fill

_unlink_quietly = fileutils.unlink_quietly


class Import:
    """One source chain being installed into ``chain`` as history.

    :param files: ``[(name, size)]`` of the source chain, oldest first.
    :param digests: ``{name: (block_size, [hex sha256 per block])}`` of
        every file with bytes, from the source over RPC.
    :param base_offset: the source chain's base offset.
    :param wait: seconds to wait for another pull of the same import.

    ``installed`` is the history name when the ledger says this import is
    in place already (nothing to fetch; only the release is left).
    What is written, durable and checked is kept by an
    ``import_progress.Progress``.
    """

    def __init__(self, chain, import_id, files, digests, base_offset=0,
                 wait=0):
        chain.check_import_id(import_id)
        names.check_count('base_offset', base_offset)
        self.chain = chain
        self.import_id = import_id
        self.base_offset = base_offset
        self.files = import_progress.check_files(chain, files)
        self.digests = import_progress.check_digests(self.files, digests)
        self.staging = chain.path(PARTIAL_PREFIX + import_id)
        self.sidecar = self.staging + SIDECAR_SUFFIX
        self.ledger = import_ledger.Ledger(chain)
        self.progress = import_progress.Progress(
            import_id, self.files, self.digests,
            chain.conf.consolelog.history_max_bytes)
        self.size = self.progress.size
        self.skip = self.progress.skip
        self._fd = None
        self._failure = None
        self.installed = None
        try:
            self._acquire(wait)
        except OSError as e:
            self._close()
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))

    # -- ownership -------------------------------------------------------

    def _acquire(self, wait):
        """Lock the staging file, or find the import installed."""
        if not fileutils.is_real_dir(self.chain.directory):
            raise exception.InstanceDirNotFound(path=self.chain.directory)
        self._fd, st = import_staging.lock_staging(
            self.chain, self.staging, self.import_id, wait)
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
        saved = import_staging.load_sidecar(self.sidecar, self._state())
        if saved is not None and not self.progress.valid_durable(saved):
            saved = None
        if saved is None:
            # We hold the lock: nobody else writes this file.
            _unlink_quietly(self.sidecar)
            os.ftruncate(self._fd, 0)
        else:
            self.progress.resume(saved)
            LOG.info('Resuming the console-log import %s into %s',
                     self.import_id, self.chain.directory)
        try:
            os.ftruncate(self._fd, self.size - self.skip)
        except OSError as e:
            self._fail(e)

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

    def wanted(self, name):
        """``(start, end)`` of source file ``name`` still needed."""
        return self.progress.wanted(name)

    def write(self, name, offset, data):
        """Store ``data`` found at ``offset`` of source file ``name``.

        Unchecked until ``verify``: the bytes may come from anybody.
        """
        position, size, first = self.progress.range(name)
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
        try:
            fileutils.pwrite_all(fd, data, position + offset - self.skip)
        except OSError as e:
            self._fail(e)
        self.progress.wrote(name, offset, len(data))

    def checkpoint(self, name, upto):
        """Record durably that ``[0, upto)`` of ``name`` is written.

        A resumed import does not fetch these bytes again (it still checks
        them on disk before the rename).
        """
        _position, size, _first = self.progress.range(name)
        names.check_count('upto', upto)
        if upto > size:
            raise exception.InvalidInput(
                reason='%s has only %d bytes, not %d' % (name, size, upto))
        fd = self._open_fd()
        durable = self.progress.durable
        if upto <= durable.get(name, 0):
            return
        try:
            os.fsync(fd)
            durable[name] = upto
            import_staging.save_sidecar(self.chain, self.sidecar,
                                        self._state(), durable)
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
        return self.progress.missing()

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
            return self.progress.verify(fd)
        except OSError as e:
            self._fail(e)

    def complete(self):
        """True when every byte is written and checked on disk."""
        return self.progress.complete()

    # -- installing ------------------------------------------------------

    def commit(self):
        """Install the staging file as the next history file.

        Only a ``complete`` import is installed. Returns its name. Either
        the chain is as before (and InstallFailed is raised) or the history
        is in place, with the ledger naming it (``history_install``);
        retention then drops old history.
        """
        fd = self._open_fd()
        if self.verify() or not self.complete():
            raise exception.InstallFailed(
                instance=self.chain.instance,
                reason='bytes not written or not matching the source: %s' %
                str(self.missing())[:200])
        name = history_install.install(
            self.chain, self.ledger, self.staging, fd,
            import_id=self.import_id, digests_id=digests_id(self.digests),
            base_offset=self.base_offset + self.skip, fail=self._fail)
        self._close()
        _unlink_quietly(self.sidecar)
        self.installed = name
        if self.skip:
            LOG.warning('Imported console-log history of instance %s '
                        'without its oldest %d byte(s): more than '
                        'history_max_bytes (%d)', self.chain.instance,
                        self.skip,
                        self.chain.conf.consolelog.history_max_bytes)
        try:
            self.chain.apply_retention(keep=name)
        except (OSError, exception.ConsoleLogError) as e:
            LOG.warning('Console-log history retention in %s failed: %s',
                        self.chain.directory, e)
        return name

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
