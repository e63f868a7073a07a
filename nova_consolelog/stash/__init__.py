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

"""A console-log chain moved aside: the source side of a hand-over.

Why: on the source, nova's ``_post_live_migration`` runs ``driver.cleanup()``
— which deletes the instance directory, ``console.log`` included, when the
instance path is not shared — *before* it tells the destination. And on a
shared instance path the destination's incoming QEMU start makes virtlogd
unlink ``console.log`` and every ``console.log.N``. So the chain is moved
into a stash outside the instance directory first, and deleted only after
the destination has verified its copy (or after ``stash_expiry``).

One module per job:

``lock``
    the host's hand-over lock: every change of which files hold an
    instance's console output, against the reads.
``manifest``
    ids, the manifest file and its checks; the hash list of a stashed file.
``store``
    ``Stash``: making one (by rename), finding them, settling a resize's
    held stash, deleting; ``expire``.
``grants``
    the release token a stash's destination is given, and the check of a
    release against it.
``pins``
    a consistent snapshot of a *live* chain for one pull.
``install``
    giving a stash back: moved back into the instance directory
    (``restore``) or copied in as one history file (``install_as_history``).

Layout: ``<stash_path>/<instance_uuid>/<stash_id>/`` holds the files under
their original names (so a ``ConsoleLogChain`` over the stash directory
reads, describes and serves chunks exactly as in an instance directory),
the chain's ``console.history.base`` and ``manifest.json``.

Files are moved by ``os.rename``: never copied, so the stash must be on the
same filesystem as the instance directories (``EXDEV`` is refused with a
clear error). A QEMU still writing through virtlogd keeps writing into the
moved inode. The manifest is written last, atomically; a stash directory
without one (a crash while stashing) is still loaded and listed, with state
``incomplete``, so its bytes are never forgotten. An empty chain gives a
stash without files: the caller always gets a stash id to hand over.

**Hash lists.** A stash made after the QEMU stopped (the source of a
non-shared live migration) records, in its manifest, a sha256 per MiB of
every file (see hashlist), computed once when it is made: a destination
checks what it installed against them, and the release compares roots
without reading the files again. Bytes that change in a stash afterwards
(a disk error, a hand) no longer match and are never installed anywhere.

**Pins.** A pull of a live chain (``nova-consolelog pull`` without a
stash) reads a *pin*: hard links to the chain's files as one consistent
snapshot saw them, with their sizes and hash lists at that instant, under
``<stash_path>/.pins/``. virtlogd may roll over or truncate the chain
meanwhile: the linked inodes keep their first ``size`` bytes (virtlogd only
appends, renames and unlinks), so the pull never splices two files. Pins
are deleted by the release or after ``pull_timeout`` twice over.

**Grants.** A stash is handed to one destination: the manifest names it
when the source knows it (``destination``). ``grant`` gives a puller of
that host a random token (only its sha256 is kept, in ``grants.json``);
``release`` wants that token and the roots of every file. Knowing the
checksums is not enough to make a source drop a stash.

Every function takes the configuration it needs as an argument; nothing
here reads the global ``CONF``.
"""

from nova_consolelog.stash.grants import GRANTS  # noqa: F401
from nova_consolelog.stash.grants import MAX_GRANTS  # noqa: F401
from nova_consolelog.stash.lock import handover_lock  # noqa: F401
from nova_consolelog.stash.manifest import HOLD_CONFIRM  # noqa: F401
from nova_consolelog.stash.manifest import MANIFEST  # noqa: F401
from nova_consolelog.stash.manifest import MANIFEST_VERSION  # noqa: F401
from nova_consolelog.stash.manifest import new_stash_id  # noqa: F401
from nova_consolelog.stash.manifest import STASH_ID_RE  # noqa: F401
from nova_consolelog.stash.manifest import STATE_INCOMPLETE  # noqa: F401
from nova_consolelog.stash.manifest import STATE_STASHED  # noqa: F401
from nova_consolelog.stash.pins import is_pin_id  # noqa: F401
from nova_consolelog.stash.pins import MAX_PINS  # noqa: F401
from nova_consolelog.stash.pins import MAX_PINS_PER_INSTANCE  # noqa: F401
from nova_consolelog.stash.pins import PIN_PREFIX  # noqa: F401
from nova_consolelog.stash.pins import pin_root  # noqa: F401
from nova_consolelog.stash.pins import PINS_DIR  # noqa: F401
from nova_consolelog.stash.store import expire  # noqa: F401
from nova_consolelog.stash.store import Stash  # noqa: F401
