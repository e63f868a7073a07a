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

"""Keep console-log files the incoming QEMU's virtlogd would unlink.

On a shared instance path the destination moves the chain aside in
``pre_live_migration``; the source's QEMU keeps writing through its
virtlogd's open descriptor. If that virtlogd rolls over before the
destination's QEMU starts, it rotates *by path*: it creates a new
``console.log`` in the shared instance directory and writes the source's
last lines there. The destination's virtlogd then starts with
``append="off"`` and unlinks ``console.log`` and every ``console.log.N``:
the source's last lines live on only in an unlinked file, until the source
QEMU stops and they are gone. Nothing is told when it happens.

A ``RotationCatcher`` watches the instance directory with inotify from
before the chain is moved until the import, and hard-links every console-log
file that appears there into a directory of its own (on the same
filesystem: the stash root). ``finish`` then drops the links of files that
are still in the instance directory (the destination's own files, or a
rotation after its QEMU started: they are part of the live chain) and
returns the others, oldest first: files nobody else holds any more, with
every byte the source wrote into them.
"""

import ctypes
import os
import select
import shutil
import struct
import threading

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# From <sys/inotify.h>.
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct('iIII')

_libc = ctypes.CDLL(None, use_errno=True)


class RotationCatcher:
    """Hard-link new console-log files of ``directory`` into ``keep_dir``.

    ``keep_dir`` is created, and must be on the filesystem of
    ``directory``. Use ``start``, then ``finish`` and ``cleanup`` (or
    ``cleanup`` alone to give up).
    """

    POLL_SECONDS = 0.2

    def __init__(self, directory, keep_dir, log_name='console.log'):
        self.directory = directory
        self.keep_dir = keep_dir
        self.log_name = log_name
        self.missed = []
        self._caught = []
        self._inodes = set()
        self._fd = None
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        os.makedirs(self.keep_dir, exist_ok=True)
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), 'inotify_init1 failed')
        if _libc.inotify_add_watch(fd, os.fsencode(self.directory),
                                   IN_CREATE | IN_MOVED_TO) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, 'inotify_add_watch %s failed' %
                          self.directory)
        self._fd = fd
        self._thread = threading.Thread(
            target=self._run, name='consolelog-catcher', daemon=True)
        self._thread.start()
        return self

    def _is_log(self, name):
        if name == self.log_name:
            return True
        prefix = self.log_name + '.'
        return name.startswith(prefix) and name[len(prefix):].isdigit()

    def _run(self):
        while True:
            # Once stopping, take only what has already arrived. Read only
            # what select says is there: under eventlet a read of an empty
            # inotify descriptor waits for it to become readable.
            stopping = self._stop.is_set()
            readable, _, _ = select.select(
                [self._fd], [], [], 0 if stopping else self.POLL_SECONDS)
            if readable:
                self._read_events()
            if stopping:
                return

    def _read_events(self):
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                LOG.warning('Console-log catcher of %s: events lost (inotify '
                            'queue overflow)', self.directory)
                continue
            name = os.fsdecode(raw.rstrip(b'\0'))
            if self._is_log(name):
                self._catch(name)

    def _catch(self, name):
        target = os.path.join(self.keep_dir, '%06d' % len(self._caught))
        try:
            os.link(os.path.join(self.directory, name), target)
        except FileNotFoundError:
            # Renamed or unlinked before we got to it.
            self.missed.append(name)
            return
        except OSError as e:
            LOG.warning('Console-log catcher of %s could not keep %s: %s',
                        self.directory, name, e)
            self.missed.append(name)
            return
        inode = os.stat(target).st_ino
        if inode in self._inodes:
            os.unlink(target)  # the same file, renamed
            return
        self._inodes.add(inode)
        self._caught.append(target)

    def _stop_watching(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self):
        """Stop; the kept files nobody else holds, oldest write first.

        The caller takes them (by rename) and then calls ``cleanup``.
        """
        self._stop_watching()
        present = set()
        for name in os.listdir(self.directory):
            try:
                present.add(os.stat(os.path.join(self.directory,
                                                 name)).st_ino)
            except FileNotFoundError:
                continue
        orphans = []
        for path in self._caught:
            st = os.stat(path)
            if st.st_ino in present or st.st_size == 0:
                os.unlink(path)
            else:
                orphans.append((st.st_mtime_ns, path))
        if self.missed:
            LOG.debug('Console-log catcher of %s: %s went before they were '
                      'linked', self.directory, ', '.join(self.missed))
        return [path for _mtime, path in sorted(orphans)]

    def cleanup(self):
        """Stop if needed and remove ``keep_dir`` with what is left in it."""
        self._stop_watching()
        shutil.rmtree(self.keep_dir, ignore_errors=True)
