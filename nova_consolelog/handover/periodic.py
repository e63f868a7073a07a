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

"""The periodic work that brings every hand-over to an end.

Run by the driver's periodic task (``[consolelog] reaper_interval``):

* owed imports (a record in state ``PULLING`` or ``INSTALLED``, or a
  resize's ``MIGRATING`` left by a process that died in its finish) are
  retried, until ``stash_expiry``, after which the source has given the
  stash up too;
* an evacuation's history left on a host that was down is collected once
  that host is back (``handover.evacuation``), until
  ``evacuation_collect_max_age``;
* source records go once their stash is released, or after
  ``stash_expiry``;
* stashes older than ``stash_expiry`` and pins older than twice
  ``pull_timeout`` are deleted;
* staging files of imports nobody resumed (a crash, a source that never
  came back) are deleted after ``partial_import_max_age`` (default:
  ``stash_expiry``), never while a pull holds their flock.
"""

import os
import time

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import fileutils
from nova_consolelog.handover import deferred
from nova_consolelog.handover import evacuation as evacuation_steps
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State
from nova_consolelog import history_import
from nova_consolelog import stash as cl_stash

LOG = logging.getLogger(__name__)


def partial_import_max_age(conf):
    """Seconds after which an unfinished import nobody holds is deleted."""
    age = conf.consolelog.partial_import_max_age
    return conf.consolelog.stash_expiry if age is None else age


class Housekeeping:
    """One host's periodic retries and clean-ups."""

    def __init__(self, host, importer, evacuation=None):
        self.host = host
        self.importer = importer
        self.evacuation = evacuation or evacuation_steps.EvacuationSteps(
            host, importer)

    def run(self):
        """One pass; returns the uuids whose import completed in it."""
        done = []
        for rec in self.host.records():
            data = rec.load()
            if not data:
                continue
            if data.get('role') not in list(Role) or \
                    not isinstance(data.get('peer'), str):
                LOG.warning('Removing console-log hand-over record %s: it '
                            'names no role or peer', rec.path)
                rec.remove()
                continue
            if data.get('role') == Role.SOURCE:
                self._forget_finished_source(rec, data)
                continue
            if data.get('evacuated'):
                if self.evacuation.collect(rec, data):
                    done.append(rec.instance_uuid)
                continue
            if self._retry_import(rec, data):
                done.append(rec.instance_uuid)
        self._expire_stashes()
        self.remove_abandoned_imports()
        return done

    def _forget_finished_source(self, rec, data):
        """Drop a source record once its stashes are gone or it is stale."""
        age = time.time() - data.get('created', 0)
        if State.of(data) == State.STASHED and not self.host.stashes(
                rec.instance_uuid):
            rec.remove()
        elif age > self.host.conf.consolelog.stash_expiry:
            rec.remove()

    def _retry_import(self, rec, data):
        """Retry an owed import; True when it completed now."""
        expiry = self.host.conf.consolelog.stash_expiry
        if State.of(data) == State.MIGRATING:
            with self.host.lock(rec.instance_uuid):
                data = rec.adopt_orphan(rec.load())
            if data is None:
                return False
        if State.of(data) not in (State.PULLING, State.INSTALLED):
            # An import installed but not released (a crash, a source
            # away) is pulled again: the ledger finds it installed and
            # only the release is sent.
            return False
        if time.time() - data.get('created', 0) > expiry:
            # The source has expired its stash by now.
            LOG.warning('Giving up the console-log import of instance '
                        '%s from %s after %ss: its earlier console '
                        'output is not migrated', rec.instance_uuid,
                        data.get('peer'), expiry)
            rec.remove()
            return False
        try:
            # A retry that finds every import slot taken goes on in the
            # background rather than holding up the periodic task.
            return bool(deferred.run_or_defer(
                self.importer, rec.instance_uuid, data['peer'],
                data.get('shared', False)))
        except Exception as e:
            LOG.warning('Retry of the console-log import of instance %s '
                        'from %s failed; will retry: %s',
                        rec.instance_uuid, data.get('peer'), e)
            return False

    def _expire_stashes(self):
        host = self.host
        try:
            cl_stash.expire(host.conf.consolelog.stash_expiry,
                            root=host.stash_root, conf=host.conf)
            cl_stash.expire(2 * host.conf.consolelog.pull_timeout,
                            root=cl_stash.pin_root(host.stash_root),
                            conf=host.conf)
        except Exception as e:
            LOG.warning('Expiring console-log stashes failed: %s', e)

    def remove_abandoned_imports(self):
        """Staging files of imports nobody resumed; ``{uuid: [names]}``.

        A pull from a source that never comes back (or came back under
        another name), or one killed with its host, leaves its staging
        file and progress; after ``partial_import_max_age`` they go
        (``history_import.remove_abandoned``: never a file a running pull
        holds by its flock). The source's stash is gone after
        ``stash_expiry`` anyway, so nothing could resume them.
        """
        host = self.host
        max_age = partial_import_max_age(host.conf)
        try:
            names = os.listdir(host.instances_path)
        except OSError:
            return {}
        removed = {}
        for name in names:
            if not uuidutils.is_uuid_like(name):
                continue
            directory = os.path.join(host.instances_path, name)
            if not fileutils.is_real_dir(directory):
                continue
            try:
                gone = history_import.remove_abandoned(host.chain(name),
                                                       max_age)
            except Exception as e:
                LOG.debug('Abandoned imports of %s not checked: %s', name, e)
                continue
            if gone:
                removed[name] = gone
        return removed
