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

"""Reading our own small state files without trusting what is on disk.

Why: manifests, hand-over records, import progress and the import ledger
sit in directories other processes can write to (a shared instance path,
a stash another host made). A name there may be a symlink (we would read
somebody else's file), a FIFO (``open`` blocks for ever — once while the
host-wide hand-over lock was held), a device, or a file of gigabytes (read
whole into memory). Every such file is opened here without following
links and without blocking, refused unless it is a regular file, and read
up to a cap that we choose.
"""

import errno
import fcntl
import functools
import hashlib
import json
import os
import stat

from oslo_log import log as logging

from nova_consolelog import exception

LOG = logging.getLogger(__name__)

# Our state files are a few KiB; a manifest of a chain with a hash list of
# every MiB is under 1 KiB per 10 MiB of console output.
MAX_STATE_BYTES = 1024 * 1024

# Bytes read or copied at a time when a file is hashed or copied.
COPY_CHUNK = 1024 * 1024

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def read_small(path, max_bytes=MAX_STATE_BYTES):
    """The bytes of regular file ``path``; at most ``max_bytes``.

    :raises FileNotFoundError: nothing at ``path``.
    :raises UnsafeChainFile: a symlink, FIFO, device or directory, or
        larger than ``max_bytes``.
    :raises OSError: any other read error.
    """
    try:
        fd = os.open(path, _FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise exception.UnsafeChainFile(path=path,
                                            reason='a symbolic link')
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise exception.UnsafeChainFile(path=path,
                                            reason='not a regular file')
        if st.st_size > max_bytes:
            raise exception.UnsafeChainFile(
                path=path, reason='%d bytes, more than the %d allowed' % (
                    st.st_size, max_bytes))
        parts = []
        left = max_bytes + 1
        while left > 0:
            data = os.read(fd, min(left, 65536))
            if not data:
                break
            parts.append(data)
            left -= len(data)
        data = b''.join(parts)
        if len(data) > max_bytes:
            raise exception.UnsafeChainFile(
                path=path, reason='grew past %d bytes' % max_bytes)
        return data
    finally:
        os.close(fd)


def load_json(path, max_bytes=MAX_STATE_BYTES):
    """The JSON value of a small state file (see ``read_small``).

    :raises ValueError: not UTF-8 JSON.
    """
    return json.loads(read_small(path, max_bytes).decode('utf-8'))


def check_regular(path, mode):
    """Raise UnsafeChainFile unless ``mode`` is a regular file's."""
    if stat.S_ISLNK(mode):
        raise exception.UnsafeChainFile(path=path, reason='a symbolic link')
    if stat.S_ISDIR(mode):
        raise exception.UnsafeChainFile(path=path, reason='a directory')
    if not stat.S_ISREG(mode):
        raise exception.UnsafeChainFile(path=path,
                                        reason='not a regular file')


def unlink_quietly(path):
    """Remove ``path``; True if it was there. Other errors only logged."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        LOG.warning('Could not remove %s: %s', path, e)
        return False


def refuse_link(path):
    """InvalidInput when ``path`` is a symbolic link: never followed.

    Why: a directory an operator names that is a symlink points somewhere
    nova did not put it; the command line refuses it instead of reading
    through it.
    """
    if os.path.islink(path):
        raise exception.InvalidInput(
            reason='%s is a symbolic link; refusing to follow it' % (
                exception.bounded(path, 200),))


def is_real_dir(path):
    """True for a directory that is not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def typed_os_errors(method, make_error):
    """``method`` with a stray OSError turned into a typed error.

    ``make_error(args, kwargs, error)`` builds the error from the call's
    arguments and the OSError.

    Why: callers of the chain and the stash handle our typed errors (a
    read fails cleanly, a migration goes on without its console log); a
    bare OSError from deep inside would escape as a bug. Each module says
    which error it raises and with which names.
    """
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as e:
            raise make_error(args, kwargs, e)
    return wrapper


def pread_exact(fd, length, offset):
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


def pwrite_all(fd, data, offset):
    """Write all of ``data`` at ``offset`` (``os.pwrite`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fsync_dir(directory):
    """fsync a directory, so that renames in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(directory, name, data):
    """Replace ``directory/name`` with ``data`` (bytes) atomically.

    Temp file, fsync, rename, fsync of the directory: on failure the old
    file is intact and the temp file removed.
    """
    path = os.path.join(directory, name)
    tmp = path + '.tmp'
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
        unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def inode(path):
    """The inode number of ``path`` (not followed), or None."""
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def sha256_fd(fd, size):
    """Hex sha256 of the first ``size`` bytes of descriptor ``fd``."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        data = os.pread(fd, min(COPY_CHUNK, size - offset), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


def flock_held(path):
    """Whether a live process holds ``path``'s flock now (not followed).

    Why: a pull holds a flock on its staging file and its import ticket
    for as long as it runs; the kernel drops it when the process dies, so
    a file whose lock is free belongs to nobody (``status``, the gate).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock at once
    return False
