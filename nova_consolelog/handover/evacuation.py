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

"""An evacuation: the guest rebuilt elsewhere while its host is down.

nova's evacuation spawns the instance on a new host (``rebuild`` with
``evacuate=True``) while the old host is down, and nothing tells the new
host when the old one comes back. Two cases:

* **Shared instance path.** The instance directory, chain included, is the
  one the old host used: the spawn's QEMU start renames the chain into
  history (``restarts.before_qemu_start``), as at any other start. The
  old host's later destroy keeps the directory (``destroy_disks=False``).
* **Non-shared path.** The older output stays on the old host. At the
  rebuild the new host writes a record ``AWAITING_SOURCE``; the spawn's
  QEMU start reserves the history's place (a placeholder, see
  ``history_import.reserve_slot``).
  When the old host comes back, nova's ``_destroy_evacuated_instances``
  destroys its copy: before that deletes the directory, the old host stops
  the domain and stashes the whole chain (hash lists computed, the guest is
  off) for the instance's current host only. The new host's periodic task
  probes the old one (a short timeout, backing off: it is usually down) and
  once the stash is listed imports it into the reserved slot, as a live
  migration's destination does: the late history appears before all the
  output written here since, whatever QEMU starts happened meanwhile.

If the old host never comes back the output from before the evacuation is
lost; the new host gives up after ``evacuation_collect_max_age``.
"""

import time

from oslo_log import log as logging

from nova_consolelog import fileutils
from nova_consolelog.handover import deferred
from nova_consolelog.handover.record import Role
from nova_consolelog.handover.record import State
from nova_consolelog import history_import

LOG = logging.getLogger(__name__)

# Seconds a probe of the old host may take: it is usually down, and a full
# rpc_timeout per pass would hold the periodic task up for that long.
PROBE_TIMEOUT = 5
# Backoff between probes of a host that did not answer: doubling from the
# periodic task's interval, at most this many seconds.
PROBE_BACKOFF_MAX = 1800


def collect_max_age(conf):
    """Seconds the new host keeps trying to collect an evacuated history."""
    age = conf.consolelog.evacuation_collect_max_age
    return conf.consolelog.stash_expiry if age is None else age


class EvacuationSteps:
    """Both ends of an evacuation on one host."""

    def __init__(self, host, importer):
        self.host = host
        self.importer = importer
        # Old hosts that did not answer a probe, until when they are left
        # alone: one silent host evacuated many guests, and each of their
        # records must not cost a probe timeout of its own.
        self._silent_until = {}

    # -- the new host ----------------------------------------------------

    def arrived(self, instance_uuid, source_host):
        """New host, at nova's rebuild, before the spawn starts a QEMU.

        On a shared path (the instance directory holds the chain already)
        nothing is owed: returns False. Otherwise records that the older
        output is owed by ``source_host`` and returns True; the spawn's
        QEMU start reserves its history slot (``before_qemu_start``).
        The directory is not created here: nova's spawn tells from its
        absence that a failed evacuation must delete it, and a later
        evacuation would take a leftover one for shared storage.
        """
        host = self.host
        if not source_host or source_host == host.host:
            return False
        chain = host.chain(instance_uuid)
        with host.lock(instance_uuid):
            # nova's instance_on_disk (the directory is writable here) ran
            # before, and nova creates the directory only at the spawn.
            if fileutils.is_real_dir(chain.directory):
                LOG.info('Instance %s evacuated from %s on a shared '
                         'instance path: its console log stays in place',
                         instance_uuid, source_host)
                return False
            host.record(instance_uuid).save(
                role=Role.DESTINATION, peer=source_host, shared=False,
                state=State.AWAITING_SOURCE, evacuated=True,
                since=time.time())
        LOG.info('Instance %s evacuated from %s: its earlier console output '
                 'is collected from there once that host is back',
                 instance_uuid, source_host)
        return True

    def forget(self, instance_uuid):
        """New host: the instance is deleted; nothing is owed any more."""
        record = self.host.record(instance_uuid)
        data = record.load()
        if data is not None and data.get('evacuated'):
            self._give_up(record, data)
            LOG.info('Instance %s is deleted: its console output from '
                     'before its evacuation from %s is not collected',
                     instance_uuid, data.get('peer'))

    def moving_on(self, instance_uuid, dest_host):
        """New host: the guest migrates on before the collection.

        The older output would be collected into a directory the guest has
        left: the collection is given up (a known limitation, see
        doc/source/migration.rst); an empty slot goes with the chain as
        zero bytes.
        """
        rec = self.host.record(instance_uuid)
        data = rec.load()
        if data is None or not data.get('evacuated') or \
                State.of(data) == State.INSTALLED:
            return False
        rec.remove()
        LOG.warning('Instance %s migrates to %s before its console output '
                    'from before its evacuation was collected from %s: that '
                    'output is not collected any more', instance_uuid,
                    dest_host, data.get('peer'))
        return True

    def collect(self, rec, data):
        """Periodic, new host: collect when the old host is back.

        Returns True when the history is installed now. Never waits
        longer than ``PROBE_TIMEOUT`` for a host that does not answer, and
        leaves it alone for a doubling backoff afterwards (every record
        naming it: one probe per silent host and backoff, not per guest).
        """
        host = self.host
        uuid = rec.instance_uuid
        now = time.time()
        since = data.get('since', data.get('created', 0))
        if now - since > collect_max_age(host.conf):
            LOG.warning('Giving up collecting the console history of '
                        'instance %s from %s, where it was left by its '
                        'evacuation %ds ago: its console output from before '
                        'the evacuation is lost', uuid, data.get('peer'),
                        now - since)
            self._give_up(rec, data)
            return False
        if State.of(data) == State.AWAITING_SOURCE:
            if now < data.get('next_probe', 0) or \
                    now < self._silent_until.get(data['peer'], 0):
                return False
            if not self._probe(rec, data, now):
                return False
            data = rec.load() or data
        try:
            # Never wait for an import slot inside nova's periodic task.
            done = bool(deferred.run_or_defer(
                self.importer, uuid, data['peer'], False))
        except Exception as e:
            LOG.warning('Collecting the console history of instance %s '
                        'from %s failed; will retry: %s', uuid,
                        data.get('peer'), str(e)[:300])
            return False
        if done and State.of(data) != State.INSTALLED:
            # (INSTALLED: only the release was owed; said already.)
            LOG.info('Collected the console history of instance %s left on '
                     'host %s by its evacuation, %d byte(s)', uuid,
                     data.get('peer'), data.get('bytes', 0))
        return done

    def _give_up(self, rec, data):
        """Remove the record and its slot if nothing filled it.

        An empty slot would read as nothing anyway; it goes so that it is
        not carried along as history.
        """
        with self.host.lock(rec.instance_uuid):
            rec.remove()
            try:
                chain = self.host.chain(rec.instance_uuid)
                slot = data.get('reserved')
                if history_import.is_placeholder(chain, slot):
                    fileutils.unlink_quietly(chain.path(slot))
            except Exception as e:
                LOG.debug('Reserved slot of %s not removed: %s',
                          rec.instance_uuid, e)

    def _probe(self, rec, data, now):
        """True when the old host answers with a stash to pull."""
        peer = data['peer']
        uuid = rec.instance_uuid
        failures = data.get('probe_failures', 0)
        try:
            sets = self.host.rpcapi.list_stashes({}, peer, uuid,
                                                 timeout=PROBE_TIMEOUT)
        except Exception as e:
            interval = max(self.host.conf.consolelog.reaper_interval, 1)
            wait = min(interval * 2 ** min(failures, 16), PROBE_BACKOFF_MAX)
            rec.update(create=False, probe_failures=failures + 1,
                       next_probe=now + wait)
            self._silent_until[peer] = now + wait
            LOG.debug('Old host %s of evacuated instance %s does not '
                      'answer (%s); next try in %ss', peer, uuid,
                      str(e)[:200], wait)
            return False
        self._silent_until.pop(peer, None)
        if not sets:
            # Back, but nothing stashed (yet): nova's destroy of its copy
            # runs in its init_host; try at the next pass.
            rec.update(create=False, probe_failures=0, next_probe=0)
            return False
        size = sum(f.size for s in sets for f in s.files)
        with self.host.lock(uuid):
            # From now on the import is owed like a migration's: reads
            # take the older part from the old host until it is installed.
            return rec.update(create=False, state=State.PULLING,
                              bytes=size, created=time.time()) is not None

    # -- the old host ----------------------------------------------------

    def left(self, instance_uuid, current_host):
        """Old host, back: nova is about to delete its copy of the guest.

        The domain is stopped (the caller did), so the whole chain goes
        into a stash with hash lists, for ``current_host`` only, which
        collects it. Returns the stash id, or None when there was nothing.
        """
        stash = self.host.stash_chain(instance_uuid,
                                      destination=current_host)
        if stash is None:
            return None
        LOG.info('Stashed the console log of instance %s (%s), evacuated to '
                 '%s while this host was down, for that host to collect',
                 instance_uuid, stash.stash_id, current_host)
        return stash.stash_id
