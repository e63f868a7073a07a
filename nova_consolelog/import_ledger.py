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

"""The import ledger: which imports a chain holds, so each is installed once.

Before ``Import.commit`` renames a staging file into place, the import id
and the staging file's inode go into the ledger
(``.console.history.ledger`` in the chain's directory). An import whose
ledger entry exists while the staging path no longer holds that inode was
renamed: a re-run, a retry after a crash between the rename and the
release, or a concurrent pull finds it installed (``Ledger.installed``)
and only releases the source's stash. Retention marks the entries of the
history it drops (``mark_dropped``): an import dropped by retention is
still one installed once and never comes back as the newest history.

The ledger is one small JSON state file, replaced atomically; an
unreadable ledger is logged and read as empty (refusing to import would
lose the history for good; at worst an import gets in twice).
"""

import json
import os
import time

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog import fileutils

LOG = logging.getLogger(__name__)


LEDGER_NAME = '.console.history.ledger'


# Ledger entries kept: far more than the history files a chain keeps.
LEDGER_MAX = 256


class Ledger:
    """Which imports this directory holds (see the module docstring)."""

    def __init__(self, chain):
        self.chain = chain
        self.path = chain.path(LEDGER_NAME)

    def load(self):
        try:
            data = fileutils.load_json(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, exception.ConsoleLogError) as e:
            # Refusing to import would lose the history for good; an
            # unreadable ledger can at worst let an import in twice.
            LOG.error('Console-log import ledger %s is unreadable (%s); '
                      'imports are not checked against it', self.path, e)
            return {}
        return data if isinstance(data, dict) else {}

    def entry(self, import_id):
        entry = self.load().get(import_id)
        return entry if isinstance(entry, dict) else None

    def installed(self, import_id):
        """The history name import ``import_id`` was installed as, or None.

        Installed means renamed into place: the history file the entry
        names is the staging file's inode (or retention dropped it since).
        An entry whose file is not there was written by an install that
        never got to its rename.
        """
        entry = self.entry(import_id)
        if entry is None:
            return None
        if entry.get('dropped'):
            return entry.get('name') or True
        name = entry.get('name')
        if not isinstance(name, str):
            return None
        try:
            ino = os.lstat(self.chain.path(name)).st_ino
        except (OSError, ValueError):
            return None
        return name if ino == entry.get('ino') else None

    def forget_inode(self, ino):
        """Drop entries of a staging file that is being removed."""
        data = self.load()
        stale = [k for k, v in data.items()
                 if isinstance(v, dict) and v.get('ino') == ino and
                 not v.get('dropped')]
        for key in stale:
            del data[key]
        if stale:
            self._save(data)

    def mark_dropped(self, inodes):
        """Retention removed these history inodes: still installed once."""
        data = self.load()
        changed = False
        for entry in data.values():
            if isinstance(entry, dict) and entry.get('ino') in inodes:
                entry['dropped'] = True
                changed = True
        if changed:
            self._save(data)

    def _save(self, data):
        if len(data) > LEDGER_MAX:
            for key in sorted(data, key=lambda k: data[k].get('time', 0))[
                    :len(data) - LEDGER_MAX]:
                del data[key]
        self.chain.write_state(LEDGER_NAME, json.dumps(
            data, sort_keys=True).encode('utf-8'))

    def add(self, import_id, **entry):
        data = self.load()
        entry['time'] = time.time()
        data[import_id] = entry
        self._save(data)

    def remove(self, import_id):
        data = self.load()
        if data.pop(import_id, None) is not None:
            self._save(data)
