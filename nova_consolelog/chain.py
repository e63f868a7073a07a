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

"""The console-log chain of one instance on one host.

Reading a chain (scan, merged read, chunk reads, describe) and changing
it (base offset, adopting history, retention) happen here. Other modules
touch console-log files too, each through this class where it can:
``history_import`` stages and installs another host's chain,
``stash`` moves a chain aside and back, ``fileutils`` holds the
descriptor-level helpers all of them share.

A chain lives in one directory (an instance directory, or a stash) and is,
oldest first:

* imported history: ``console.history.<seq>`` (``<seq>`` six digits, higher
  is newer). virtlogd never renames, rotates or deletes these names: with
  nova's ``<log append="off"/>`` it unlinks ``console.log`` and every
  ``console.log.N`` at each QEMU start (boot, hard reboot, and the incoming
  QEMU of a live migration), and its rollover renames ``.i`` to ``.i+1``;
  history under those names would be lost.
* virtlogd's backups ``console.log.N`` … ``console.log.0`` (``.0`` is the
  newest backup);
* virtlogd's ``console.log``, still being written.

Members are found by listing the directory and matching exact names; any
other name is ignored. A member that is a symlink, a directory or not a
regular file is refused (``UnsafeChainFile``), never followed.

**The stream.** ``read_tail`` and ``read`` return bytes of one stream: the
history files, then the backups newer than the first missing backup number,
then ``console.log``. Without history this is exactly what nova's
``LibvirtDriver._get_console_output_file`` reads (``console.log``, then
``.0``, ``.1``, … stopping at the first missing file, and nothing at all
when ``console.log`` is missing), so our read equals nova's byte for byte
and extends it by the imported history. Backups beyond a gap are left out of
the stream, as nova leaves them out, but ``scan()`` and ``describe()`` list
them and a stash moves them, so they are still migrated (into history) and
no byte is lost.

**Offsets.** ``read()`` pages through the stream by absolute byte offset,
like GCE's ``getSerialPortOutput``: offset = ``base_offset`` + position in
the stream, where ``base_offset`` counts the bytes dropped before the first
retained byte (history retention, bytes skipped by an import). It is kept in
``console.history.base`` next to the chain (written atomically; absent means
0). Offsets are stable while history is dropped. They are not stable when
virtlogd drops its oldest backup at a rollover or a QEMU start truncates the
log: we cannot observe that, and the live part's offsets shift down.

**Rollover safety.** virtlogd may rotate while we read: every read works
on a snapshot, every member opened at one instant and checked against a
second listing (``chain_snapshot``).

**Importing history.** ``begin_import`` stages another host's chain and
installs it as the next ``console.history.<seq>``, checked on disk and
exactly once: see ``history_import``.
"""

import collections
import errno
import os
import re
import stat

from oslo_log import log as logging

from nova_consolelog import chain_history
from nova_consolelog import chain_reads
from nova_consolelog import chain_snapshot
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)

HISTORY_PREFIX = chain_history.HISTORY_PREFIX
HISTORY_RE = re.compile(r'^console\.history\.(\d{6})$')
# Absolute offset of the chain's first retained byte.
BASE_OFFSET_NAME = 'console.history.base'
# Staging files of imports (see history_import).
PARTIAL_PREFIX = '.console.history.partial-'
SIDECAR_SUFFIX = '.json'
IMPORT_ID_RE = names.IMPORT_ID_RE

# O_NONBLOCK: opening a FIFO planted under a member name must not hang.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# One file of a chain, as found by a scan. ``kind`` is one of
# objects.fields.FileKind; ``index`` is the backup number N or the history
# sequence number (None for the log).
ChainFile = collections.namedtuple(
    'ChainFile', ['name', 'kind', 'index', 'size', 'mtime'])


# Callers outside this refactor (stash, migration, demo, and their tests)
# still find these here.
last_lines = chain_reads.last_lines
ReadResult = chain_reads.ReadResult
fsync_dir = fileutils.fsync_dir
write_atomic = fileutils.write_atomic


class ConsoleLogChain(chain_reads.ChainReads, chain_history.ChainHistory):
    """The console-log chain in one directory.

    :param directory: the instance directory or a stash directory.
    :param log_name: virtlogd's file name, default ``[consolelog] log_name``.
    :param instance: a label for error messages (default: the directory's
        base name, which is the instance uuid for an instance directory).
    :param conf: ConfigOpts with our options registered.
    """

    def __init__(self, directory, log_name=None, instance=None, *, conf):
        self.conf = conf
        self.directory = os.fspath(directory)
        self.log_name = log_name or self.conf.consolelog.log_name
        if '/' in self.log_name or self.log_name in ('.', '..'):
            raise exception.InvalidInput(
                reason='log_name must be a file name, not %r' % log_name)
        self.instance = instance or os.path.basename(
            self.directory.rstrip('/'))
        self._backup_re = re.compile(
            r'^%s\.(0|[1-9][0-9]{0,8})$' % re.escape(self.log_name))

    def __repr__(self):
        return 'ConsoleLogChain(%r)' % self.directory

    @classmethod
    def for_instance(cls, instance_uuid, *, conf):
        """The chain in ``<instances_path>/<uuid>``; validates the uuid.

        The directory name is the canonical form of the uuid, never the
        caller's string.
        """
        canonical = names.check_instance_uuid(instance_uuid)
        return cls(os.path.join(conf.consolelog.instances_path, canonical),
                   instance=canonical, conf=conf)

    # -- names -----------------------------------------------------------

    def classify(self, name):
        """``(kind, index)`` of a member name, or None for any other name."""
        if name == self.log_name:
            return cl_fields.FileKind.LOG, None
        match = self._backup_re.match(name)
        if match:
            return cl_fields.FileKind.BACKUP, int(match.group(1))
        match = HISTORY_RE.match(name)
        if match:
            return cl_fields.FileKind.HISTORY, int(match.group(1))
        return None

    def _check_member_name(self, name):
        if not isinstance(name, str) or not name or '/' in name or (
                '\0' in name) or '..' in name or self.classify(name) is None:
            raise exception.InvalidInput(
                reason='%r is not the name of a console-log file' % (name,))
        return name

    def _path(self, name):
        return os.path.join(self.directory, name)

    # -- listing ---------------------------------------------------------

    def _list(self):
        """[(ChainFile, (st_dev, st_ino))], oldest first, from lstat."""
        self._check_directory()
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            raise exception.InstanceDirNotFound(path=self.directory)
        except OSError as e:
            raise exception.ChainFileUnreadable(path=self.directory,
                                                reason=e.strerror)
        found = []
        for name in names:
            kind_index = self.classify(name)
            if kind_index is None:
                continue
            path = self._path(name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # rotated away since the listing
            except OSError as e:
                raise exception.ChainFileUnreadable(path=path,
                                                    reason=e.strerror)
            fileutils.check_regular(path, st.st_mode)
            found.append((ChainFile(name, kind_index[0], kind_index[1],
                                    st.st_size, st.st_mtime),
                          (st.st_dev, st.st_ino)))
        found.sort(key=lambda item: chain_snapshot.order_key(item[0]))
        return found

    def _check_directory(self):
        """Refuse a chain directory that is a symlink: never followed.

        A symlink planted as an instance or stash directory would make us
        serve, stash or delete another directory's files.
        """
        try:
            mode = os.lstat(self.directory).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise exception.InstanceDirNotFound(path=self.directory)
        if stat.S_ISLNK(mode):
            raise exception.UnsafeChainFile(path=self.directory,
                                            reason='a symbolic link')
        if not stat.S_ISDIR(mode):
            raise exception.InstanceDirNotFound(path=self.directory)

    @chain_reads.typed_io
    def scan(self):
        """ChainFile list, oldest first. Never follows a symlink."""
        return [f for f, _ident in self._list()]

    def _open(self, name, missing_ok=False):
        """A read-only descriptor of a member; None if missing_ok.

        Refuses anything but a regular file, never follows a symlink (the
        chain's directory included).
        """
        self._check_directory()
        path = self._path(name)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise exception.ChainFileNotFound(name=name,
                                              instance=self.instance)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise exception.UnsafeChainFile(path=path,
                                                reason='a symbolic link')
            raise exception.ChainFileUnreadable(path=path, reason=e.strerror)
        try:
            fileutils.check_regular(path, os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _snapshot(self):
        """Every member opened, consistent with one listing.

        See ``chain_snapshot.take``: a listing taken during a rotation is
        taken again.
        """
        return chain_snapshot.take(
            self._list, lambda name: self._open(name, missing_ok=True),
            self._live_only)

    def _live_only(self):
        """A snapshot of the live log alone.

        Rotating faster than we can list: the live log alone is always
        consistent with itself.
        """
        LOG.debug('Console log in %s kept rotating; reading %s only',
                  self.directory, self.log_name)
        fd = self._open(self.log_name, missing_ok=True)
        if fd is None:
            return chain_snapshot.Snapshot([])
        st = os.fstat(fd)
        return chain_snapshot.Snapshot([chain_snapshot.Member(
            ChainFile(self.log_name, cl_fields.FileKind.LOG, None,
                      st.st_size, st.st_mtime), fd, st.st_size)])

    # -- base offset -----------------------------------------------------

    @chain_reads.typed_io
    def base_offset(self):
        """Stream offset of the first retained byte (0 when never set)."""
        path = self._path(BASE_OFFSET_NAME)
        fd = self._open(BASE_OFFSET_NAME, missing_ok=True)
        if fd is None:
            return 0
        try:
            text = fileutils.pread_exact(fd, 64, 0)
        finally:
            os.close(fd)
        try:
            value = int(text.decode('ascii').strip())
        except (UnicodeDecodeError, ValueError):
            value = -1
        if value < 0:
            raise exception.ChainFileUnreadable(
                path=path, reason='not a non-negative integer: %r' % text)
        return value

    def _set_base_offset(self, value):
        write_atomic(self.directory, BASE_OFFSET_NAME,
                     b'%d\n' % names.check_count('base_offset', value))

    # -- small state files and names, for history_import -----------------

    def path(self, name):
        """Path of ``name`` in this chain's directory."""
        return self._path(name)

    def check_member_name(self, name):
        return self._check_member_name(name)

    check_import_id = staticmethod(names.check_import_id)

    def write_state(self, name, data):
        """Replace our state file ``name`` atomically (``write_atomic``)."""
        write_atomic(self.directory, name, data)

    def fsync(self):
        fsync_dir(self.directory)

    def next_history_name(self):
        return self._next_history_name()

    def set_base_offset(self, value):
        self._set_base_offset(value)

    def open_member(self, name):
        """A read-only descriptor of member ``name`` (close it)."""
        self._check_member_name(name)
        return self._open(name)

    def snapshot(self):
        """Every member opened at one instant (a context manager).

        ``.members`` are ``(file, fd, size)``, oldest first; the
        descriptors pin the inodes until the snapshot is closed.
        """
        return self._snapshot()
