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

"""The guest's side of the demo: its output, and virtlogd writing it.

Every guest line carries a counter, so the merged console shows at a glance
that nothing is missing or repeated. The chain is written the way virtlogd
writes it: files of exactly ``max_size`` bytes (lines may be split between
two files), rotated ``console.log`` → ``.0`` → ``.1`` → ``.2``; and at a
QEMU start with ``append="off"`` virtlogd truncates.
"""

import os

# virtlogd's defaults (virtlogd.conf max_size, max_backups).
VIRTLOGD_MAX_SIZE = 2 * 1024 * 1024
VIRTLOGD_MAX_BACKUPS = 3


class VirtlogdWriter:
    """Appends guest output to a directory the way virtlogd does.

    virtlogd fills ``console.log`` up to exactly ``max_size`` bytes, then
    rotates: the oldest backup is deleted, ``console.log.i`` becomes
    ``console.log.i+1`` and ``console.log`` becomes ``console.log.0``.
    """

    def __init__(self, directory, max_size=VIRTLOGD_MAX_SIZE,
                 max_backups=VIRTLOGD_MAX_BACKUPS, log_name='console.log'):
        self.directory = directory
        self.max_size = max_size
        self.max_backups = max_backups
        self.log_name = log_name
        os.makedirs(directory, exist_ok=True)

    def _path(self, index=None):
        name = self.log_name if index is None else '%s.%d' % (
            self.log_name, index)
        return os.path.join(self.directory, name)

    def _rotate(self):
        oldest = self._path(self.max_backups - 1)
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(self.max_backups - 2, -1, -1):
            if os.path.exists(self._path(i)):
                os.rename(self._path(i), self._path(i + 1))
        os.rename(self._path(), self._path(0))

    def write(self, data):
        while data:
            path = self._path()
            size = os.path.getsize(path) if os.path.exists(path) else 0
            room = self.max_size - size
            if room <= 0:
                self._rotate()
                continue
            with open(path, 'ab') as f:
                f.write(data[:room])
            data = data[room:]


def guest_line(counter, where):
    """One line of guest output, with a counter.

    Every tenth line carries escape sequences and bytes that are not UTF-8,
    as real consoles do: the hand-over must keep every byte as it is.
    """
    extra = b''
    if counter % 10 == 0:
        extra = b' \x1b[1;32m[  OK  ]\x1b[0m \xff\xfe'
    return b'guest line %07d on %s: the quick brown fox%s\r\n' % (
        counter, where.encode('ascii'), extra)


def virtlogd_truncates(directory, log_name='console.log'):
    """What virtlogd does at a QEMU start with ``append="off"``."""
    for name in os.listdir(directory):
        if name == log_name or (name.startswith(log_name + '.') and
                                name[len(log_name) + 1:].isdigit()):
            os.unlink(os.path.join(directory, name))
