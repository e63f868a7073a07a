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

"""A complete import renamed into the chain as history, exactly once.

``install`` is the last step of ``history_import.Import.commit``: the
staging file, written and checked on disk, becomes the next
``console.history.<seq>`` (or fills the slot reserved for it). The order
of its steps is what makes an import installed exactly once, whatever
crashes: the base offset first (only when the chain had no history), then
the ledger entry naming the staging file's inode, then the rename, then
the directory's fsync. A failure undoes what was done, so that either the
chain is as before or the history is in place with the ledger naming it.

Why a module of its own: staging (``history_import``, ``import_staging``,
``import_progress``) is about getting the bytes right; this is about
putting them in place once, and is what a reviewer of "exactly once"
reads.
"""

import os

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog import history_slots

LOG = logging.getLogger(__name__)


def install(chain, ledger, staging, fd, *, import_id, digests_id,
            base_offset, fail):
    """Rename ``staging`` (open as ``fd``) into ``chain`` as history.

    :param ledger: the chain's ``import_ledger.Ledger``.
    :param digests_id: what the ledger records of the source's hash lists.
    :param base_offset: the chain's base offset after the install when it
        had no history before (the source's, plus the bytes skipped).
    :param fail: called with the OSError of a step of the rename, after
        the undo (the import's disk-full handling); it raises.
    :returns: the history name.
    :raises: InstallFailed, and the chain is as before.
    """
    try:
        # A reserved slot (``reserve_slot``) places the import before
        # the history written here since; otherwise it is the newest.
        name = (history_slots.slot_to_fill(chain) or
                chain.next_history_name())
        had_history = any(f.name != name for f in chain.history())
        old_base = chain.base_offset()
    except exception.InstallFailed:
        raise
    except exception.ConsoleLogError as e:
        raise exception.InstallFailed(instance=chain.instance,
                                      reason=str(e))
    target = chain.path(name)
    new_base = old_base if had_history else base_offset
    base_changed = new_base != old_base
    try:
        st = os.fstat(fd)
        if os.path.lexists(target) and not history_slots.is_placeholder(
                chain, name):
            raise exception.InstallFailed(
                instance=chain.instance, reason='%s appeared' % name)
        if base_changed:
            chain.set_base_offset(new_base)
        ledger.add(import_id, name=name, ino=st.st_ino,
                   digests_id=digests_id)
        # Over a placeholder: atomic, the slot reads as empty until
        # then (and again if the fsync fails and it is put back).
        placeholder = os.path.lexists(target)
        os.rename(staging, target)
        try:
            chain.fsync()
        except OSError:
            os.rename(target, staging)
            if placeholder:
                history_slots.create_placeholder(chain, name)
            raise
    except (OSError, exception.ConsoleLogError) as e:
        _undo(chain, ledger, staging, import_id, base_changed, old_base)
        if isinstance(e, exception.InstallFailed):
            raise
        if isinstance(e, OSError):
            fail(e)
        raise exception.InstallFailed(instance=chain.instance,
                                      reason=str(e))
    return name


def _undo(chain, ledger, staging, import_id, base_changed, old_base):
    """Take back the ledger entry and the base offset of a failed install.

    The ledger entry goes only while the staging file is still there:
    once renamed, the history is in place and the entry names it.
    """
    try:
        if os.path.lexists(staging):
            ledger.remove(import_id)
        if base_changed:
            chain.set_base_offset(old_base)
    except (OSError, exception.ConsoleLogError) as undo:
        LOG.error('Could not undo a failed install in %s: %s',
                  chain.directory, undo)
