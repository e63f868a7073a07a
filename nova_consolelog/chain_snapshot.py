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

"""A chain's members opened at one instant, whatever virtlogd renames.

virtlogd may rotate while we read. ``take`` opens every member first (the
descriptors pin the inodes), then lists the directory again; if any name
now points at another inode (or vanished), a rotation happened and the
snapshot is retried. Identity is ``(st_dev, st_ino)``, so one inode is
never read twice and a read never duplicates bytes; bytes rotated away
during a read may be missing from it. If the chain keeps rotating through
every retry, the read falls back to ``console.log`` alone (consistent with
itself).

``order_key`` says which member is older, ``Snapshot.stream`` which
members a read of the stream covers (nova's view plus history).

Why a module of its own: this is the one place that has to reason about
virtlogd renaming files under us; the chain module keeps names, listing
and the base offset, ``chain_reads`` reads what a snapshot holds.
"""

import collections
import os
import time

from oslo_log import log as logging

from nova_consolelog.objects import fields as cl_fields

LOG = logging.getLogger(__name__)

SNAPSHOT_ATTEMPTS = 20
# Snapshots taken again while the backup numbers have a gap (a rollover
# between two of its renames); see take.
GAP_RETRIES = 5

# An open member of a snapshot: the descriptor pins the inode. ``file`` is
# the chain.ChainFile the listing found.
Member = collections.namedtuple('Member', ['file', 'fd', 'size'])


class Snapshot:
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
                                key=lambda m: order_key(m.file))


def take(list_members, open_member, live_only):
    """Every member opened, consistent with one listing.

    :param list_members: ``() -> [(ChainFile, (st_dev, st_ino))]``, oldest
        first (the chain's listing, from lstat).
    :param open_member: ``(name) -> fd``, or None when the name is gone.
    :param live_only: ``() -> Snapshot`` of the live log alone, the
        fallback of a chain that keeps rotating.

    Members are opened oldest first: virtlogd only ever moves a file to
    an older name, so a rotation between two opens can make a later
    open see a newer file (bytes skipped) but never an older one
    (bytes repeated). The second listing then detects the rotation and
    the snapshot is retried.

    A rollover is several renames (``.N-1`` to ``.N`` ... ``.0`` to
    ``.1``, then ``console.log`` to ``.0``, then a new base), and a
    truncation several unlinks: a listing between two of them shows a
    gap in the backup numbers or backups without a base, where nova's
    read (and ours) stops, so a read there would show less than the
    read before it. Such a snapshot is taken again a few times; a gap
    that stays is a real one.
    """
    gap_retries = GAP_RETRIES
    for _attempt in range(SNAPSHOT_ATTEMPTS):
        listed = list_members()
        members = []
        consistent = True
        try:
            for f, ident in listed:
                fd = open_member(f.name)
                if fd is None:
                    consistent = False
                    break
                st = os.fstat(fd)
                members.append(Member(f, fd, st.st_size))
                if (st.st_dev, st.st_ino) != ident:
                    consistent = False
                    break
            if consistent:
                again = list_members()
                consistent = (
                    [(f.name, i) for f, i in again] ==
                    [(f.name, i) for f, i in listed] and
                    len({i for _f, i in listed}) == len(listed))
        except BaseException:
            Snapshot(members).close()
            raise
        if consistent and gap_retries > 0 and backup_gap(listed):
            gap_retries -= 1
            consistent = False
        if consistent:
            return Snapshot(members)
        Snapshot(members).close()
        time.sleep(0.001)
    return live_only()


def backup_gap(listed):
    """Whether a listing looks taken in the middle of a rollover.

    Backup numbers that skip one below the highest, or backups without the
    base log: virtlogd renames ``.0`` to ``.1`` and then the base to
    ``.0`` before it creates a new base, and a truncation unlinks the base
    before the backups.
    """
    numbers = {f.index for f, _ident in listed
               if f.kind == cl_fields.FileKind.BACKUP}
    if not numbers:
        return False
    has_log = any(f.kind == cl_fields.FileKind.LOG for f, _ident in listed)
    return not has_log or len(numbers) != max(numbers) + 1


def order_key(f):
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
