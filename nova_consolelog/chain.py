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

STATUS: interface stub. Implementation: issue 2.
"""

import collections

from nova_consolelog import conf as cl_conf

CONF = cl_conf.CONF

HISTORY_PREFIX = 'console.history.'

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


class ConsoleLogChain:
    """The console-log chain in one directory."""

    def __init__(self, directory, log_name=None):
        raise NotImplementedError

    @classmethod
    def for_instance(cls, instance_uuid, conf=CONF):
        """The chain in ``<instances_path>/<uuid>``; validates the uuid."""
        raise NotImplementedError

    def scan(self):
        """ChainFile list, oldest first. Never follows a symlink."""
        raise NotImplementedError

    def read_tail(self, max_bytes=None, length=None):
        """Last ``max_bytes`` of the merged chain, then the last ``length``
        lines; equal to nova's ``_get_console_output_file`` on a chain
        without history."""
        raise NotImplementedError

    def read(self, start, max_bytes=None):
        """Paged read over the whole stream; returns a ReadResult."""
        raise NotImplementedError

    def describe(self, host, instance_uuid, checksums=False, tail_bytes=0,
                 stash_id=None):
        """A ConsoleLogSet of this chain."""
        raise NotImplementedError

    def read_chunk(self, name, offset, length):
        """``(data, eof)``: up to ``length`` bytes of member ``name``."""
        raise NotImplementedError

    def begin_import(self, import_id, files, base_offset=0):
        """Start (or resume) importing another host's chain as history."""
        raise NotImplementedError
