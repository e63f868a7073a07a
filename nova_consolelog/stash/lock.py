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

"""The host's hand-over lock.

Moving a chain into a stash, installing a stash as history, restoring one,
committing an import and releasing a stash change which files hold an
instance's console output; a read in the middle would miss or repeat
bytes. This lock keeps the two apart.
"""

import contextlib
import fcntl
import os
import threading

from nova_consolelog import exception

_held_locks = threading.local()


@contextlib.contextmanager
def handover_lock(instances_path, shared=False):
    """Serialise hand-over state changes with console reads on this host.

    State changes hold the lock exclusively; reads (console reads, the RPC
    endpoint's describe and list) hold it shared. It is an flock on the
    instances directory itself, which always exists on a compute host, so
    taking it creates nothing; on a shared instance path both hosts lock
    the same directory. State changes are renames or a bounded copy, so one
    lock for the host is short-held. Re-entrant within a thread (a state
    change may read). Never make an RPC call holding it.
    """
    held = getattr(_held_locks, 'paths', None)
    if held is None:
        held = _held_locks.paths = set()
    path = os.path.realpath(instances_path)
    if path in held:
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise exception.InstanceDirNotFound(path=instances_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
    finally:
        os.close(fd)
