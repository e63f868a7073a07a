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

"""Reserved history slots: an owed import's place in the chain.

An import owed to this host holds console output older than anything
the guest writes here; a QEMU start before the import renames the chain
into history, which would take the next sequence numbers first. So the
first QEMU start while the import is owed reserves the import's place
(``handover.restarts``): a zero-length history file, the *placeholder*,
named in the hand-over record. That start renames its chain into the
numbers after it; the import fills the slot by renaming its staging file
over it (``history_import.Import.commit``, with the ledger's exactly-once
unchanged: the ledger entry names the slot, and the slot holds the staging
file's inode only once renamed).
A placeholder reads as empty. See doc/source/migration.rst.
"""

import os
import stat

from nova_consolelog import exception


def create_placeholder(chain, name):
    """Create the zero-length placeholder ``name`` (exclusive)."""
    fd = os.open(chain.path(name),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, 0o600)
    os.close(fd)


def reserve_slot(chain):
    """Reserve the next history position for an owed import; its name.

    Creates the placeholder (zero length, exclusive) and syncs the
    directory, so that a crash leaves either no reservation or one.
    """
    name = chain.next_history_name()
    try:
        create_placeholder(chain, name)
    except FileExistsError:
        raise exception.InstallFailed(instance=chain.instance,
                                      reason='%s appeared' % name)
    chain.fsync()
    return name


def is_placeholder(chain, name):
    """True when ``name`` is a zero-length regular history file here."""
    if not isinstance(name, str) or chain.classify(name) is None or \
            chain.classify(name)[0] != 'history':
        return False
    try:
        st = os.lstat(chain.path(name))
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def slot_to_fill(chain):
    """The slot an import into ``chain`` fills, or None.

    The chain's ``fill_slot`` (set by the importer: a callable reading the
    hand-over record at the commit, so that a slot reserved during the
    pull counts), when it is still a placeholder, or free again and older
    than every history file (retention dropped the placeholder: the import
    still goes where its bytes belong, and the next retention pass treats
    it like any oldest file). A slot an import filled already is not refilled:
    a second stash then takes the next number.
    """
    name = getattr(chain, 'fill_slot', None)
    if callable(name):
        name = name()
    if not isinstance(name, str) or chain.classify(name) is None or \
            chain.classify(name)[0] != 'history':
        return None
    try:
        st = os.lstat(chain.path(name))
    except FileNotFoundError:
        st = None
    except OSError as e:
        # Never guess: the import would land after newer history.
        raise exception.InstallFailed(
            instance=chain.instance,
            reason='reserved slot %s: %s' % (name, e.strerror))
    if st is not None:
        empty = stat.S_ISREG(st.st_mode) and st.st_size == 0
        return name if empty else None
    index = chain.classify(name)[1]
    if all(f.index > index for f in chain.history()):
        return name
    return None
