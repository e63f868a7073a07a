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

"""The history side of a console-log chain: adopt, import, retain.

``ChainHistory`` is what ``chain.ConsoleLogChain`` does with
``console.history.<seq>`` files: list them, start (or resume) the import
of another host's chain as the next one (``history_import``), adopt files
moved aside as history by rename (zero copy, on one filesystem), and drop
the oldest history beyond ``history_max_bytes`` (telling the import
ledger, so a dropped import is still one installed once).

Why a module of its own: virtlogd owns ``console.log`` and its backups and
never touches these names; everything here is ours. The chain module
keeps what both share: names, listing and the base offset (snapshots:
``chain_snapshot``).
"""

import os

from oslo_log import log as logging

from nova_consolelog import chain_reads
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import import_ledger
from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)

HISTORY_PREFIX = 'console.history.'
MAX_HISTORY_SEQ = 999999


class ChainHistory:
    """The history of ``ConsoleLogChain``.

    A mixin: it uses the chain's ``directory``, ``instance``, ``conf``,
    ``scan``, ``base_offset``, ``_path`` and ``_set_base_offset``.
    """

    @chain_reads.typed_io
    def history(self):
        """The history members, oldest first."""
        return [f for f in self.scan()
                if f.kind == cl_fields.FileKind.HISTORY]

    def begin_import(self, import_id, files, digests, base_offset=0,
                     wait=0):
        """Start (or resume) importing another host's chain as history.

        ``files``: ``[(name, size)]`` of the source chain, oldest first;
        ``digests``: ``{name: (block_size, [block sha256])}`` from the
        source. Returns a ``history_import.Import``; see that module.
        """
        from nova_consolelog import history_import
        return history_import.Import(self, import_id, files, digests,
                                     base_offset=base_offset, wait=wait)

    @chain_reads.typed_io
    def remove_partials(self, older_than):
        """Delete imports abandoned ``older_than`` seconds ago or more.

        Staging files no pull holds, and their progress; see
        ``history_import.remove_abandoned``.
        """
        from nova_consolelog import history_import
        return history_import.remove_abandoned(self, older_than)

    @chain_reads.typed_io
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
        fileutils.fsync_dir(self.directory)
        return names

    def _next_history_name(self):
        seqs = [f.index for f in self.history()]
        seq = max(seqs) + 1 if seqs else 1
        if seq > MAX_HISTORY_SEQ:
            raise exception.InstallFailed(
                instance=self.instance,
                reason='history sequence numbers are exhausted')
        return '%s%06d' % (HISTORY_PREFIX, seq)

    def _remember_dropped(self, doomed):
        """Tell the import ledger that retention drops these files.

        An import dropped by retention is still one installed once: a
        re-run of its pull must not bring it back as the newest history.
        """
        inodes = {fileutils.inode(self._path(f.name))
                  for f in doomed} - {None}
        if inodes:
            import_ledger.Ledger(self).mark_dropped(inodes)

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
        self._remember_dropped(doomed)
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
        fileutils.fsync_dir(self.directory)
        LOG.warning('Dropped %d byte(s) of old console-log history of '
                    'instance %s (%s): more than %d file(s) or %d byte(s)',
                    gone, self.instance, ', '.join(f.name for f in doomed),
                    group.history_max_files, group.history_max_bytes)
        return gone
