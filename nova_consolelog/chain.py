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

This is the only module that touches console-log files.

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

**Rollover safety.** virtlogd may rotate while we read. A read opens every
member first (the descriptors pin the inodes), then lists the directory
again; if any name now points at another inode (or vanished), a rotation
happened and the snapshot is retried. Identity is ``(st_dev, st_ino)``, so
one inode is never read twice and a read never duplicates bytes; bytes
rotated away during a read may be missing from it. If the chain keeps
rotating through every retry, the read falls back to ``console.log`` alone
(consistent with itself).

**Importing history.** ``begin_import`` stages another host's chain in
``.console.history.partial-<id>`` (progress in ``<staging>.json``, so an
interrupted import resumes), and ``Import.commit`` renames it to the next
``console.history.<seq>``: until that rename nothing visible changes, and a
failure at any step leaves the previous chain intact.
"""

import collections
import errno
import functools
import hashlib
import json
import os
import re
import stat
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog.objects import console_log as cl_objects
from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)

CONF = cl_conf.CONF

HISTORY_PREFIX = 'console.history.'
HISTORY_RE = re.compile(r'^console\.history\.(\d{6})$')
MAX_HISTORY_SEQ = 999999
# Absolute offset of the chain's first retained byte.
BASE_OFFSET_NAME = 'console.history.base'
PARTIAL_PREFIX = '.console.history.partial-'
SIDECAR_SUFFIX = '.json'
_TMP_SUFFIX = '.tmp'
IMPORT_ID_RE = re.compile(r'^[A-Za-z0-9_-]{1,64}$')

# O_NONBLOCK: opening a FIFO planted under a member name must not hang.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_SNAPSHOT_ATTEMPTS = 20
_COPY_CHUNK = 1024 * 1024

# One file of a chain, as found by a scan. ``kind`` is one of
# objects.fields.FileKind; ``index`` is the backup number N or the history
# sequence number (None for the log).
ChainFile = collections.namedtuple(
    'ChainFile', ['name', 'kind', 'index', 'size', 'mtime'])

# Result of a paged read: ``data`` starts at stream offset ``start`` (which
# is later than the offset asked for when older bytes are gone: then
# ``truncated`` is True); ``next`` is the offset to ask for next.
ReadResult = collections.namedtuple(
    'ReadResult', ['data', 'start', 'next', 'truncated'])

# An open member of a snapshot: the descriptor pins the inode.
_Member = collections.namedtuple('_Member', ['file', 'fd', 'size'])


def last_lines(data, length):
    """The last ``length`` lines of ``data``, cut as nova does.

    nova's compute manager (``_tail_log``) does ``split(b'\\n')``, keeps
    the last ``length`` items and joins them; ``length`` 0 gives nothing,
    None everything.
    """
    if length is None:
        return data
    _check_count('length', length)
    if length == 0:
        return b''
    return b'\n'.join(data.split(b'\n')[-length:])


def _check_count(what, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(
            reason='%s must be an integer, not %r' % (what, value))
    if value < 0:
        raise exception.InvalidInput(
            reason='%s must not be negative, got %d' % (what, value))
    return value


def _typed_io(method):
    """Turn a stray OSError of a read into ChainFileUnreadable."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise exception.ChainFileUnreadable(
                path=e.filename or self.directory,
                reason=e.strerror or str(e))
    return wrapper


def _pread_exact(fd, length, offset):
    """Up to ``length`` bytes at ``offset``; short only at end of file."""
    parts = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b''.join(parts)


def fsync_dir(directory):
    """fsync a directory, so that renames in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        LOG.warning('Could not remove %s: %s', path, e)
        return False


def write_atomic(directory, name, data):
    """Replace ``directory/name`` with ``data`` (bytes) atomically.

    Temp file, fsync, rename, fsync of the directory: on failure the old
    file is intact and the temp file removed.
    """
    path = os.path.join(directory, name)
    tmp = path + _TMP_SUFFIX
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC |
                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


class _Snapshot:
    """Open members of a chain at one instant, oldest first."""

    def __init__(self, members):
        self.members = members

    def close(self):
        for m in self.members:
            os.close(m.fd)
        self.members = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stream(self):
        """The members read by read_tail/read: nova's view plus history."""
        history = [m for m in self.members
                   if m.file.kind == cl_fields.FileKind.HISTORY]
        logs = [m for m in self.members
                if m.file.kind == cl_fields.FileKind.LOG]
        if not logs:
            return history
        backups = {m.file.index: m for m in self.members
                   if m.file.kind == cl_fields.FileKind.BACKUP}
        newer_than_gap = []
        while len(newer_than_gap) in backups:
            newer_than_gap.append(backups[len(newer_than_gap)])
        return history + sorted(newer_than_gap + logs,
                                key=lambda m: _order_key(m.file))


class ConsoleLogChain:
    """The console-log chain in one directory.

    :param directory: the instance directory or a stash directory.
    :param log_name: virtlogd's file name, default ``[consolelog] log_name``.
    :param instance: a label for error messages (default: the directory's
        base name, which is the instance uuid for an instance directory).
    :param conf: ConfigOpts with our options registered.
    """

    def __init__(self, directory, log_name=None, instance=None, conf=None):
        self.conf = conf if conf is not None else CONF
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
    def for_instance(cls, instance_uuid, conf=CONF):
        """The chain in ``<instances_path>/<uuid>``; validates the uuid.

        The directory name is the canonical form of the uuid, never the
        caller's string.
        """
        if not isinstance(instance_uuid, str) or not (
                uuidutils.is_uuid_like(instance_uuid)):
            raise exception.InvalidInput(
                reason='malformed instance uuid %r' % (instance_uuid,))
        canonical = str(uuid.UUID(instance_uuid))
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
            _check_regular(path, st.st_mode)
            found.append((ChainFile(name, kind_index[0], kind_index[1],
                                    st.st_size, st.st_mtime),
                          (st.st_dev, st.st_ino)))
        found.sort(key=lambda item: _order_key(item[0]))
        return found

    @_typed_io
    def scan(self):
        """ChainFile list, oldest first. Never follows a symlink."""
        return [f for f, _ident in self._list()]

    def _open(self, name, missing_ok=False):
        """A read-only descriptor of a member; None if missing_ok.

        Refuses anything but a regular file, never follows a symlink.
        """
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
            _check_regular(path, os.fstat(fd).st_mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _snapshot(self):
        """Every member opened, consistent with one listing.

        Members are opened oldest first: virtlogd only ever moves a file to
        an older name, so a rotation between two opens can make a later
        open see a newer file (bytes skipped) but never an older one
        (bytes repeated). The second listing then detects the rotation and
        the snapshot is retried.
        """
        for _attempt in range(_SNAPSHOT_ATTEMPTS):
            listed = self._list()
            members = []
            consistent = True
            try:
                for f, ident in listed:
                    fd = self._open(f.name, missing_ok=True)
                    if fd is None:
                        consistent = False
                        break
                    st = os.fstat(fd)
                    members.append(_Member(f, fd, st.st_size))
                    if (st.st_dev, st.st_ino) != ident:
                        consistent = False
                        break
                if consistent:
                    again = self._list()
                    consistent = (
                        [(f.name, i) for f, i in again] ==
                        [(f.name, i) for f, i in listed] and
                        len({i for _f, i in listed}) == len(listed))
            except BaseException:
                _Snapshot(members).close()
                raise
            if consistent:
                return _Snapshot(members)
            _Snapshot(members).close()
            time.sleep(0.001)
        # Rotating faster than we can list: the live log alone is always
        # consistent with itself.
        LOG.debug('Console log in %s kept rotating; reading %s only',
                  self.directory, self.log_name)
        fd = self._open(self.log_name, missing_ok=True)
        if fd is None:
            return _Snapshot([])
        st = os.fstat(fd)
        return _Snapshot([_Member(
            ChainFile(self.log_name, cl_fields.FileKind.LOG, None,
                      st.st_size, st.st_mtime), fd, st.st_size)])

    # -- base offset -----------------------------------------------------

    @_typed_io
    def base_offset(self):
        """Stream offset of the first retained byte (0 when never set)."""
        path = self._path(BASE_OFFSET_NAME)
        fd = self._open(BASE_OFFSET_NAME, missing_ok=True)
        if fd is None:
            return 0
        try:
            text = _pread_exact(fd, 64, 0)
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
                     b'%d\n' % _check_count('base_offset', value))

    # -- reading ---------------------------------------------------------

    def _max_bytes(self, max_bytes):
        if max_bytes is None:
            return self.conf.consolelog.max_console_bytes
        return _check_count('max_bytes', max_bytes)

    @_typed_io
    def read_tail(self, max_bytes=None, length=None):
        """Last ``max_bytes`` of the stream, then the last ``length`` lines.

        Equal to nova's ``_get_console_output_file`` (then the compute
        manager's ``length`` cut) on a chain without history. Reads only
        the tails it returns: I/O is proportional to ``max_bytes``.
        """
        max_bytes = self._max_bytes(max_bytes)
        if length is not None:
            _check_count('length', length)
        parts = []
        with self._snapshot() as snap:
            wanted = max_bytes
            for m in reversed(snap.stream()):
                if wanted <= 0:
                    break
                n = min(wanted, m.size)
                parts.append(_pread_exact(m.fd, n, m.size - n))
                wanted -= n
        return last_lines(b''.join(reversed(parts)), length)

    @_typed_io
    def read(self, start, max_bytes=None):
        """Paged read over the whole stream; returns a ReadResult.

        ``start`` is an absolute stream offset; a negative ``start`` means
        the last ``-start`` bytes. A start older than the first retained
        byte is moved up to it and ``truncated`` is True. A start beyond
        the end (the stream shrank: virtlogd dropped a backup, or a QEMU
        start truncated the log) gives no data with ``start`` = ``next`` =
        the current end, so that a polling reader resynchronises instead
        of waiting forever.
        """
        if isinstance(start, bool) or not isinstance(start, int):
            raise exception.InvalidInput(
                reason='start must be an integer, not %r' % (start,))
        max_bytes = self._max_bytes(max_bytes)
        base = self.base_offset()
        with self._snapshot() as snap:
            stream = snap.stream()
            end = base + sum(m.size for m in stream)
            asked = end + start if start < 0 else start
            truncated = max(asked, 0) < base
            begin = max(asked, base)
            if begin > end:
                return ReadResult(b'', end, end, False)
            parts = []
            position = base
            stop = min(end, begin + max_bytes)
            for m in stream:
                lo, hi = max(begin, position), min(stop, position + m.size)
                if lo < hi:
                    parts.append(_pread_exact(m.fd, hi - lo, lo - position))
                position += m.size
        data = b''.join(parts)
        return ReadResult(data, begin, begin + len(data), truncated)

    @_typed_io
    def read_chunk(self, name, offset, length):
        """``(data, eof)``: up to ``length`` bytes of member ``name``.

        ``name`` must be a member's exact name, never a path. ``eof`` is
        True when the data reaches the file's size at read time (a growing
        file may have more later). ``length`` is bounded by the caller.
        """
        self._check_member_name(name)
        _check_count('offset', offset)
        _check_count('length', length)
        fd = self._open(name)
        try:
            size = os.fstat(fd).st_size
            if offset > size:
                raise exception.InvalidInput(
                    reason='offset %d is beyond the end of %s (%d bytes)' % (
                        offset, name, size))
            data = _pread_exact(fd, min(length, size - offset), offset)
        finally:
            os.close(fd)
        return data, offset + len(data) >= size

    @_typed_io
    def describe(self, host, instance_uuid, checksums=False, tail_bytes=0,
                 stash_id=None, live_names=None):
        """A ConsoleLogSet of this chain (every member, gaps included).

        ``live_names``: names still being written. Default: ``console.log``
        of an instance directory (``stash_id`` None), nothing in a stash.
        No sha256 is computed for a live file. ``tail_bytes`` > 0 gives the
        files the tails that make up the last ``tail_bytes`` of the listed
        chain, so that ``ConsoleLogSet.merged_tail`` works without files.
        """
        _check_count('tail_bytes', tail_bytes)
        if live_names is None:
            live_names = () if stash_id is not None else (self.log_name,)
        base = self.base_offset()
        with self._snapshot() as snap:
            tails = {}
            wanted = tail_bytes
            for m in reversed(snap.members):
                n = min(wanted, m.size)
                tails[m.file.name] = (
                    _pread_exact(m.fd, n, m.size - n) if n else b'')
                wanted -= n
            files = []
            for position, m in enumerate(snap.members):
                live = m.file.name in live_names
                files.append(cl_objects.ConsoleLogFile(
                    name=m.file.name, kind=m.file.kind, position=position,
                    size=m.size, mtime=m.file.mtime, live=live,
                    sha256=(_sha256_fd(m.fd, m.size)
                            if checksums and not live else None),
                    tail=tails[m.file.name] if tail_bytes else None))
        return cl_objects.ConsoleLogSet(
            instance_uuid=instance_uuid, host=host, stash_id=stash_id,
            base_offset=base, files=files)

    # -- importing history -----------------------------------------------

    @_typed_io
    def history(self):
        """The history members, oldest first."""
        return [f for f in self.scan()
                if f.kind == cl_fields.FileKind.HISTORY]

    def begin_import(self, import_id, files, base_offset=0):
        """Start (or resume) importing another host's chain as history.

        ``files``: ``[(name, size)]`` of the source chain, oldest first.
        Returns an ``Import``; see its docstring.
        """
        return Import(self, import_id, files, base_offset)

    @_typed_io
    def remove_partials(self, older_than):
        """Delete unfinished imports older than ``older_than`` seconds.

        Staging files, their progress files and temp files; returns the
        names removed.
        """
        _check_count('older_than', older_than)
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            raise exception.InstanceDirNotFound(path=self.directory)
        removed = []
        now = time.time()
        for name in sorted(names):
            if not (name.startswith(PARTIAL_PREFIX) or
                    name == BASE_OFFSET_NAME + _TMP_SUFFIX):
                continue
            path = self._path(name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or now - st.st_mtime < older_than:
                continue
            if _unlink_quietly(path):
                removed.append(name)
        if removed:
            LOG.info('Removed unfinished console-log imports in %s: %s',
                     self.directory, ', '.join(removed))
        return removed

    @_typed_io
    def adopt_as_history(self, paths):
        """Rename files into this chain as its newest history, oldest first.

        Zero copy, on one filesystem: a file a QEMU still writes into
        through virtlogd's open descriptor keeps receiving its bytes under
        its new name, which virtlogd never renames or deletes. Returns the
        history names given.
        """
        names = []
        for path in paths:
            name = self._next_history_name()
            os.rename(path, self._path(name))
            names.append(name)
        fsync_dir(self.directory)
        return names

    def _next_history_name(self):
        seqs = [f.index for f in self.history()]
        seq = max(seqs) + 1 if seqs else 1
        if seq > MAX_HISTORY_SEQ:
            raise exception.InstallFailed(
                instance=self.instance,
                reason='history sequence numbers are exhausted')
        return '%s%06d' % (HISTORY_PREFIX, seq)

    def apply_retention(self, keep=None):
        """Drop the oldest history beyond the retention limits.

        Limits: ``history_max_files`` and ``history_max_bytes``; the file
        ``keep`` is never dropped. The dropped bytes are added to the base
        offset so that stream offsets stay stable. Returns the bytes
        dropped.
        """
        group = self.conf.consolelog
        history = self.history()
        total = sum(f.size for f in history)
        doomed = []
        while history and history[0].name != keep and (
                len(history) > group.history_max_files or
                total > group.history_max_bytes):
            f = history.pop(0)
            doomed.append(f)
            total -= f.size
        if not doomed:
            return 0
        base = self.base_offset()
        dropped = sum(f.size for f in doomed)
        self._set_base_offset(base + dropped)
        gone = 0
        try:
            for f in doomed:
                os.unlink(self._path(f.name))
                gone += f.size
        except OSError as e:
            LOG.warning('Console-log history retention in %s stopped: %s',
                        self.directory, e)
            self._set_base_offset(base + gone)
        fsync_dir(self.directory)
        LOG.warning('Dropped %d byte(s) of old console-log history of '
                    'instance %s (%s): more than %d file(s) or %d byte(s)',
                    gone, self.instance, ', '.join(f.name for f in doomed),
                    group.history_max_files, group.history_max_bytes)
        return gone


def _order_key(f):
    """Oldest first: history by sequence, then virtlogd's files by mtime.

    virtlogd's files are ordered by their last write, ties broken by
    virtlogd's numbering (``.N`` … ``.0``, then ``console.log``). On a
    chain only one virtlogd wrote, that is exactly the numbering nova reads
    in. On a shared instance path during a live migration two virtlogds
    rotate the same names: the source's keeps writing into the chain moved
    aside and, when it rolls over, renames the destination's new
    ``console.log`` to ``.0`` and starts another ``console.log``; numbers
    then no longer follow time, but each file still holds one interval of
    output and its mtime says when that interval ended.
    """
    if f.kind == cl_fields.FileKind.HISTORY:
        return (0, f.index, 0)
    if f.kind == cl_fields.FileKind.BACKUP:
        return (1, f.mtime, -f.index)
    return (1, f.mtime, 1)


def _check_regular(path, mode):
    if stat.S_ISLNK(mode):
        raise exception.UnsafeChainFile(path=path, reason='a symbolic link')
    if stat.S_ISDIR(mode):
        raise exception.UnsafeChainFile(path=path, reason='a directory')
    if not stat.S_ISREG(mode):
        raise exception.UnsafeChainFile(path=path,
                                        reason='not a regular file')


def _sha256_fd(fd, size):
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        data = os.pread(fd, min(_COPY_CHUNK, size - offset), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


class Import:
    """Another host's chain arriving as one history file of this chain.

    The bytes go into a staging file ``.console.history.partial-<id>``
    holding the concatenation of the source files, oldest first, minus the
    oldest ``skip`` bytes beyond ``history_max_bytes``. Progress is made
    durable by ``verified()`` in ``.console.history.partial-<id>.json``, so
    a later ``begin_import`` with the same id and files resumes where it
    stopped. ``commit()`` installs the staging file atomically as the next
    ``console.history.<seq>``; until then nothing visible has changed.
    """

    def __init__(self, chain, import_id, files, base_offset=0):
        if not isinstance(import_id, str) or not IMPORT_ID_RE.match(
                import_id):
            raise exception.InvalidInput(
                reason='import id must match %s, got %r' % (
                    IMPORT_ID_RE.pattern, import_id))
        _check_count('base_offset', base_offset)
        self.chain = chain
        self.import_id = import_id
        self.base_offset = base_offset
        self.files = self._check_files(files)
        self.size = sum(size for _name, size in self.files)
        self.skip = max(0, self.size -
                        chain.conf.consolelog.history_max_bytes)
        self.staging = chain._path(PARTIAL_PREFIX + import_id)
        self.sidecar = self.staging + SIDECAR_SUFFIX
        # name -> (position of the file's first byte in the concatenation,
        #          size)
        self._layout = {}
        position = 0
        for name, size in self.files:
            self._layout[name] = (position, size)
            position += size
        self._verified = {}
        self._written = {name: [] for name, _size in self.files}
        self._fd = None
        self._open()

    def _check_files(self, files):
        try:
            files = [(name, size) for name, size in files]
        except (TypeError, ValueError):
            raise exception.InvalidInput(
                reason='files must be a list of (name, size) pairs')
        seen = set()
        for name, size in files:
            self.chain._check_member_name(name)
            _check_count('size of %s' % name, size)
            if name in seen:
                raise exception.InvalidInput(
                    reason='%s is listed twice' % name)
            seen.add(name)
        return files

    def _state(self):
        return {'import_id': self.import_id,
                'files': [list(f) for f in self.files],
                'base_offset': self.base_offset}

    def _open(self):
        if not os.path.isdir(self.chain.directory):
            raise exception.InstanceDirNotFound(path=self.chain.directory)
        saved = self._load_sidecar()
        if saved is not None and os.path.lexists(self.staging):
            self.skip = saved['skip']
            self._verified = dict(saved['verified'])
            flags = os.O_RDWR
        else:
            _unlink_quietly(self.sidecar)
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
        try:
            self._fd = os.open(self.staging,
                               flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            _check_regular(self.staging, os.fstat(self._fd).st_mode)
            os.ftruncate(self._fd, self.size - self.skip)
        except exception.ConsoleLogError:
            self._close()
            raise
        except OSError as e:
            self._close()
            raise exception.InstallFailed(instance=self.chain.instance,
                                          reason=str(e))
        if self._verified:
            LOG.info('Resuming the console-log import %s into %s',
                     self.import_id, self.chain.directory)

    def _load_sidecar(self):
        try:
            with open(self.sidecar, 'rb') as f:
                saved = json.loads(f.read().decode('utf-8'))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            LOG.warning('Ignoring unreadable import progress %s: %s',
                        self.sidecar, e)
            return None
        state = dict(saved)
        skip = state.pop('skip', None)
        verified = state.pop('verified', None)
        if state != self._state() or not isinstance(skip, int) or not (
                0 <= skip <= self.size) or not isinstance(verified, dict):
            LOG.info('Import progress %s is for other files; starting over',
                     self.sidecar)
            return None
        for name, upto in verified.items():
            if name not in self._layout or not isinstance(upto, int) or (
                    not 0 <= upto <= self._layout[name][1]):
                return None
        return {'skip': skip, 'verified': verified}

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _range(self, name):
        if name not in self._layout:
            raise exception.InvalidInput(
                reason='%s is not a file of import %s' % (name,
                                                          self.import_id))
        position, size = self._layout[name]
        first = min(size, max(0, self.skip - position))
        return position, size, first

    def wanted(self, name):
        """``(start, end)`` of source file ``name`` still needed.

        ``start == end`` when nothing is.
        """
        _position, size, first = self._range(name)
        return max(first, self._verified.get(name, 0)), size

    def write(self, name, offset, data):
        """Store ``data`` found at ``offset`` of source file ``name``."""
        position, size, first = self._range(name)
        _check_count('offset', offset)
        if offset + len(data) > size:
            raise exception.InvalidInput(
                reason='%d byte(s) at %d do not fit in %s (%d bytes)' % (
                    len(data), offset, name, size))
        if self._fd is None:
            raise exception.InvalidInput(
                reason='import %s is closed' % self.import_id)
        if offset < first:
            data = data[first - offset:]
            offset = first
        if not data:
            return
        target = position + offset - self.skip
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, target)
                view = view[written:]
                target += written
        except OSError as e:
            self._fail(e)
        self._written[name].append((offset, offset + len(data)))

    def verified(self, name, upto):
        """Record durably that ``[0, upto)`` of ``name`` is written.

        The caller has checked these bytes: a resumed import does not want
        them again. Call it with a contiguous watermark.
        """
        _position, size, _first = self._range(name)
        _check_count('upto', upto)
        if upto > size:
            raise exception.InvalidInput(
                reason='%s has only %d bytes, not %d' % (name, size, upto))
        if self._fd is None:
            raise exception.InvalidInput(
                reason='import %s is closed' % self.import_id)
        if upto <= self._verified.get(name, 0):
            return
        try:
            os.fsync(self._fd)
            self._verified[name] = upto
            state = self._state()
            state.update(skip=self.skip, verified=self._verified)
            write_atomic(self.chain.directory,
                         os.path.basename(self.sidecar),
                         json.dumps(state, sort_keys=True).encode('utf-8'))
        except OSError as e:
            self._fail(e)

    def _fail(self, error):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            self.abort()
        raise exception.InstallFailed(instance=self.chain.instance,
                                      reason=str(error))

    def missing(self):
        """{name: [(start, end)]} of bytes neither written nor verified."""
        result = {}
        for name, (_position, size) in self._layout.items():
            _p, _s, first = self._range(name)
            covered = sorted(self._written[name] +
                             [(0, self._verified.get(name, 0))])
            holes = []
            at = first
            for lo, hi in covered:
                if lo > at:
                    holes.append((at, min(lo, size)))
                at = max(at, hi)
            if at < size:
                holes.append((at, size))
            if holes:
                result[name] = holes
        return result

    def commit(self):
        """Install the staging file as the next history file.

        Returns its name. Either the chain is as before (and InstallFailed
        is raised) or the history is in place; retention then drops old
        history.
        """
        if self._fd is None:
            raise exception.InvalidInput(
                reason='import %s is closed' % self.import_id)
        missing = self.missing()
        if missing:
            raise exception.InstallFailed(
                instance=self.chain.instance,
                reason='bytes never written: %s' % missing)
        chain = self.chain
        try:
            os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
        try:
            name = chain._next_history_name()
            had_history = bool(chain.history())
            old_base = chain.base_offset()
        except exception.InstallFailed:
            raise
        except exception.ConsoleLogError as e:
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))
        target = chain._path(name)
        new_base = old_base if had_history else self.base_offset + self.skip
        base_changed = new_base != old_base
        try:
            if base_changed:
                chain._set_base_offset(new_base)
            if os.path.lexists(target):
                raise exception.InstallFailed(
                    instance=chain.instance, reason='%s appeared' % name)
            os.rename(self.staging, target)
            try:
                fsync_dir(chain.directory)
            except OSError:
                os.rename(target, self.staging)
                raise
        except (OSError, exception.ConsoleLogError) as e:
            if base_changed:
                try:
                    chain._set_base_offset(old_base)
                except OSError as undo:
                    LOG.error('Could not restore the base offset of %s: %s',
                              chain.directory, undo)
            if isinstance(e, exception.InstallFailed):
                raise
            if isinstance(e, OSError):
                self._fail(e)
            raise exception.InstallFailed(instance=chain.instance,
                                          reason=str(e))
        self._close()
        _unlink_quietly(self.sidecar)
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

    def close(self):
        """Stop for now; ``begin_import`` with the same id resumes."""
        self._close()

    def abort(self):
        """Forget the import: remove the staging file and its progress."""
        self._close()
        _unlink_quietly(self.staging)
        _unlink_quietly(self.sidecar)
        try:
            fsync_dir(self.chain.directory)
        except OSError:
            pass
