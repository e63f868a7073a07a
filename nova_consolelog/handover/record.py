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

"""The hand-over record: what one host knows of an unfinished hand-over.

Each host keeps one small JSON file per instance whose console log is
changing hands, under ``<stash_path>/.handover/<host>/<uuid>.json`` (one
directory per host: on a shared instance path both hosts share the stash
root). It names the host's ``Role``, the peer holding the other part and
the hand-over's ``State``, written atomically, so that a restarted
nova-compute still knows which peer to read from and that an import is
still owed. While a record exists, console reads merge the peer's part.

The states, in the order a hand-over goes through them::

    source:       MIGRATING --(post_live_migration_at_source)--> STASHED
                  --(the destination's release: the stash goes)--> (none)
    destination:  MIGRATING --(post_live_migration_at_destination,
                  cold_migration_finished)--> PULLING --(every stash
                  installed)--> INSTALLED --(every stash released)--> (none)
    evacuation:   AWAITING_SOURCE --(the old host is back and has stashed;
                  the periodic task's probe finds the stash)--> PULLING
                  --> INSTALLED --> (none)

A destination's record may name a reserved history slot (``reserved``:
see ``history_import.reserve_slot``), which the import fills.

A record without a usable role or peer is dropped by the periodic task.
A resize's destination record still MIGRATING that another process wrote
(nova-compute died between ``cold_migration_finishing`` and
``cold_migration_finished``) is taken as PULLING by the periodic task: the
import is owed, and nothing else would ever start it.
"""

import enum
import json
import os
import re
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import exception
from nova_consolelog import fileutils

LOG = logging.getLogger(__name__)

# Under the stash root: one directory of records per host.
RECORDS_DIR = '.handover'
# Written into every record this process writes (``writer``): a record in
# a step's middle state written by another process was left by one that
# died in that step (see ``HandoverRecord.adopt_orphan``).
PROCESS_TOKEN = uuid.uuid4().hex


class Role(str, enum.Enum):
    """Which end of the hand-over this host is."""

    # The host the guest left: it holds the older part (its chain, then
    # a stash) until the destination has installed it.
    SOURCE = 'source'
    # The host the guest runs on now: it owes the import of the source's
    # part.
    DESTINATION = 'destination'


class State(str, enum.Enum):
    """How far the hand-over has come, as this host last wrote it.

    A ``str`` enum: the record file holds the value, and a state compares
    equal to it.
    """

    # Both: the guest is moving (a live migration before its switch-over,
    # a resize before the destination's install). The source's part is
    # still where the source's QEMU writes it.
    MIGRATING = 'migrating'
    # Source: the chain is in a stash for the peer to pull; the record
    # goes once the stash is released (or expires).
    STASHED = 'stashed'
    # Destination: an import is owed; the periodic task retries it.
    PULLING = 'pulling'
    # Destination: every stash is installed here; the source's release is
    # still owed. Reads take the older part from the local history now.
    INSTALLED = 'installed'
    # Destination of an evacuation on a non-shared instance path: the old
    # host is down and still holds the older part; the periodic task
    # probes it until it is back and has stashed (``handover.evacuation``).
    AWAITING_SOURCE = 'awaiting_source'

    @classmethod
    def of(cls, data):
        """The state a loaded record holds, or None when it holds none."""
        try:
            return cls(data.get('state'))
        except ValueError:
            return None


def records_dir(stash_root, host):
    """This host's directory of hand-over records under ``stash_root``."""
    return os.path.join(stash_root, RECORDS_DIR,
                        re.sub(r'[^A-Za-z0-9_.-]', '_', host))


class HandoverRecord:
    """One instance's hand-over record on this host (see the module doc).

    ``load`` returns the record as a dict (None when there is none, or it
    is unreadable); ``save`` and ``update`` take its fields as keywords:
    ``role`` (a ``Role``), ``peer`` (host name), ``state`` (a ``State``),
    ``shared`` (instance path shared by both hosts), ``stash_ids``, and
    ``hold`` (a resize's, until its confirm).
    """

    def __init__(self, directory, instance_uuid):
        self.path = os.path.join(directory, instance_uuid + '.json')
        self.instance_uuid = instance_uuid

    def load(self):
        try:
            data = fileutils.load_json(self.path)
            if not isinstance(data, dict):
                raise ValueError('not a JSON object')
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError, exception.ConsoleLogError) as e:
            LOG.warning('Ignoring unreadable console-log hand-over record '
                        '%s: %s', self.path, e)
            return None

    @staticmethod
    def _checked(fields):
        """``fields`` with role and state as the values the file holds.

        A role or state no reader knows is refused before it is written;
        what a loaded record holds is written back as it was.
        """
        for key, kind in (('role', Role), ('state', State)):
            if key in fields:
                fields[key] = kind(fields[key]).value
        return fields

    def save(self, **data):
        """Write the record anew with ``data``; returns what was written."""
        return self._write(self._checked(data))

    def update(self, create=True, **changes):
        """Change the record; with ``create`` False, only an existing one.

        Returns the record, or None when there was none to change.
        """
        changes = self._checked(changes)
        data = self.load()
        if data is None:
            if not create:
                return None
            data = {}
        data.update(changes)
        return self._write(data)

    def _write(self, data):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        data.setdefault('instance_uuid', self.instance_uuid)
        data.setdefault('created', time.time())
        data['writer'] = PROCESS_TOKEN
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return data

    def adopt_orphan(self, data):
        """The loaded record ``data``, PULLING if a dead process left it.

        A destination record still MIGRATING and held (a resize's finish,
        an unshelve's spawn) that another process wrote was left by a
        nova-compute that died inside that step: its guest may run here by
        now and nothing else would start the import, so it is owed from
        now on (the periodic task pulls; a QEMU start reserves its slot).
        The source holds its stash until the confirm or ``stash_expiry``.
        Called under the host's hand-over lock, as every record change;
        None when the record is gone.
        """
        if (data is None or not data.get('hold') or
                data.get('role') != Role.DESTINATION or
                State.of(data) != State.MIGRATING or
                data.get('writer') == PROCESS_TOKEN):
            return data
        LOG.info('Console-log import of instance %s from %s is owed: the '
                 'nova-compute that began it stopped before starting it',
                 self.instance_uuid, data.get('peer'))
        return self.update(create=False, state=State.PULLING)

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @staticmethod
    def all(directory):
        """Every record in ``directory``, by instance uuid."""
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return [HandoverRecord(directory, n[:-len('.json')])
                for n in sorted(names)
                if n.endswith('.json')
                and uuidutils.is_uuid_like(n[:-len('.json')])]
