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

"""How many pulls a process runs at once: the import gate.

Why: each pull bounds only its own buffers (bulk prefetch, sink backlog,
two windows; about 4.6 MiB per pull measured), so a destination that
receives a whole drained host at once grew by over 100 MiB, and its RPC
calls (two to four in flight per pull) took every connection of the
transport's pool — inside nova-compute that is nova's own pool. The gate
lets ``[consolelog] max_concurrent_imports`` pulls of a process run; the
others wait their turn, first come first served.

Every ``transfer.pull`` goes through it (live and cold migration, the
periodic retries, the command line), so no path can get around it. A
caller that must not wait — nova's ``post_live_migration_at_destination``
runs the import inside nova's request — says so with ``no_wait()``: then
a full gate raises ``ImportSlotBusy`` at once and the caller hands the
import to a thread of its own (``handover.deferred``).

Waiting and running pulls are visible to ``nova-consolelog status``, which
only reads files: each holds a ticket under
``<stash_path>/.imports/<host>/``, a JSON file (instance, source, state
``waiting`` or ``running``, since when) beside a lock file the pull holds
an flock on while it waits or runs. A killed process drops its flocks with
it: a ticket whose lock nobody holds is stale, ignored by ``status`` and
removed by the next gate of that host. The slots themselves are counted
in memory, so a stale ticket can never keep a pull waiting.

A ticket is marked ``running`` only after its pull took a slot, and goes
before the slot is freed; ``status`` reads the tickets one file after the
other, so a pull finishing and the next one starting between two of those
reads would still show one more running than the limit. Changing a ticket
and reading them all therefore hold an flock on the tickets' directory
(``_tickets_locked``): exclusive to change one, shared to read.
"""

import collections
import contextlib
import fcntl
import json
import os
import re
import threading
import time
import uuid

from oslo_log import log as logging

from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import fileutils

LOG = logging.getLogger(__name__)

# Under the stash root: one directory of tickets per host.
TICKETS_DIR = '.imports'
LOCK_SUFFIX = '.lock'
WAITING = 'waiting'
RUNNING = 'running'

_local = threading.local()


@contextlib.contextmanager
def _tickets_locked(directory, exclusive):
    """Hold the flock of the tickets' ``directory`` (see the docstring).

    Never fails: a directory that cannot be opened (not there yet, no
    permission for a reader) is simply not locked.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY |
                     os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # drops the flock


@contextlib.contextmanager
def no_wait():
    """Pulls started by this thread inside raise ImportSlotBusy, not wait.

    A thread-local rather than an argument: the pull is started several
    calls below the caller (``Importer.run`` -> ``transfer.pull``) and
    only the caller knows whether it runs inside nova's request.
    """
    before = getattr(_local, 'no_wait', False)
    _local.no_wait = True
    try:
        yield
    finally:
        _local.no_wait = before


def waiting_allowed():
    return not getattr(_local, 'no_wait', False)


def tickets_dir(stash_root, host):
    """This host's directory of import tickets under ``stash_root``."""
    return os.path.join(stash_root, TICKETS_DIR,
                        re.sub(r'[^A-Za-z0-9_.-]', '_', host or '-'))


class Ticket:
    """One pull's place at the gate, on disk for ``status``."""

    def __init__(self, directory, instance_uuid, source_host):
        self.directory = directory
        self.name = uuid.uuid4().hex
        self.path = os.path.join(directory, self.name + '.json')
        self.info = {'instance_uuid': instance_uuid, 'source': source_host,
                     'pid': os.getpid(), 'state': WAITING,
                     'since': time.time()}
        self._fd = None

    def open(self, state):
        """Hold the lock and write the ticket; never fails the pull."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            self._fd = os.open(self.path[:-len('.json')] + LOCK_SUFFIX,
                               os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                               os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.set(state)
        except OSError as e:
            LOG.debug('Import ticket %s not written: %s', self.path, e)

    def set(self, state):
        if self._fd is None:
            return
        self.info.update(state=state, since=time.time())
        tmp = self.path + '.tmp'
        try:
            with open(tmp, 'w') as f:
                json.dump(self.info, f)
            with _tickets_locked(self.directory, exclusive=True):
                os.replace(tmp, self.path)
        except OSError as e:
            LOG.debug('Import ticket %s not written: %s', self.path, e)

    def close(self):
        if self._fd is None:
            return
        with _tickets_locked(self.directory, exclusive=True):
            fileutils.unlink_quietly(self.path)
        fileutils.unlink_quietly(self.path[:-len('.json')] + LOCK_SUFFIX)
        os.close(self._fd)
        self._fd = None


def read_tickets(directory):
    """The live tickets in ``directory``: a list of dicts, oldest first.

    A ticket whose lock nobody holds (its process died) is left out; one
    that cannot be read is returned as ``{'error': ...}``. All of them as
    they were at one moment: no ticket changes while they are read.
    """
    with _tickets_locked(directory, exclusive=False):
        return _read_tickets(directory)


def _read_tickets(directory):
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        if not name.endswith('.json'):
            continue
        path = os.path.join(directory, name)
        if not fileutils.flock_held(path[:-len('.json')] + LOCK_SUFFIX):
            continue
        try:
            data = fileutils.load_json(path)
            if not isinstance(data, dict):
                raise ValueError('not a JSON object')
        except FileNotFoundError:
            continue  # finished meanwhile
        except (exception.ConsoleLogError, OSError, ValueError) as e:
            found.append({'error': 'import ticket %s unreadable: %s' % (
                path, e)})
            continue
        found.append(data)
    found.sort(key=lambda t: (t.get('since') or 0)
               if isinstance(t.get('since'), (int, float)) else 0)
    return found


def remove_stale(directory):
    """Remove tickets whose process died (nobody holds their lock)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for name in names:
        if not name.endswith(LOCK_SUFFIX):
            continue
        lock = os.path.join(directory, name)
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            base = lock[:-len(LOCK_SUFFIX)]
            fileutils.unlink_quietly(base + '.json')
            fileutils.unlink_quietly(base + '.json.tmp')
            fileutils.unlink_quietly(lock)
            removed += 1
        finally:
            os.close(fd)
    return removed


class ImportGate:
    """At most ``limit`` pulls at once in this process, first come first.

    ``running`` and ``waiting`` are the counts now; ``most_running`` the
    largest ``running`` seen (for tests and benchmarks).
    """

    def __init__(self, limit):
        self.limit = limit
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self.running = 0
        self.most_running = 0
        self._cleaned = set()

    @property
    def waiting(self):
        return len(self._queue)

    @contextlib.contextmanager
    def slot(self, instance_uuid, source_host, directory=None):
        """Hold a slot for the pull of ``instance_uuid`` from a source.

        Waits for a free slot (INFO once when it has to), unless the
        thread is inside ``no_wait()``: then ImportSlotBusy. ``directory``
        holds this host's tickets (None: none written).
        """
        ticket = Ticket(directory, instance_uuid, source_host) \
            if directory else None
        me = object()
        waited = None
        with self._cond:
            if self.running < self.limit and not self._queue:
                self._take()
            elif not waiting_allowed():
                raise exception.ImportSlotBusy(instance=instance_uuid,
                                               limit=self.limit)
            else:
                waited = time.monotonic()
                self._queue.append(me)
                LOG.info('Console-log import of instance %s from %s waits '
                         'for a free import slot: %d running, %d waiting '
                         '(max_concurrent_imports %d)', instance_uuid,
                         source_host, self.running, len(self._queue),
                         self.limit)
        taken = waited is None
        try:
            if ticket is not None:
                if directory not in self._cleaned:
                    self._cleaned.add(directory)
                    remove_stale(directory)
                ticket.open(RUNNING if taken else WAITING)
            if not taken:
                with self._cond:
                    try:
                        while not (self.running < self.limit and
                                   self._queue[0] is me):
                            self._cond.wait()
                    finally:
                        self._queue.remove(me)
                        self._cond.notify_all()
                    self._take()
                    taken = True
                LOG.info('Console-log import of instance %s from %s starts '
                         'after waiting %.1fs for a free import slot',
                         instance_uuid, source_host,
                         time.monotonic() - waited)
                if ticket is not None:
                    ticket.set(RUNNING)
            yield
        finally:
            # The ticket goes first: once the slot is free the next pull
            # marks its own ticket running, and ``status`` must never see
            # more pulls running than the limit.
            if ticket is not None:
                ticket.close()
            if taken:
                with self._cond:
                    self.running -= 1
                    self._cond.notify_all()

    def _take(self):
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self._cond.notify_all()


_gates = {}
_gates_lock = threading.Lock()


def gate_for(conf):
    """The process-wide gate, sized by ``max_concurrent_imports``.

    One per limit: every ConfigOpts of the process with the same limit
    shares one gate (two drivers of one nova-compute, the hosts of a
    test); a different limit gets a gate of its own.
    """
    limit = conf.consolelog.max_concurrent_imports
    with _gates_lock:
        gate = _gates.get(limit)
        if gate is None:
            gate = _gates[limit] = ImportGate(limit)
        return gate


def host_tickets_dir(conf, host):
    """Where the pulls of ``host`` keep their tickets (see ``status``)."""
    return tickets_dir(cl_conf.stash_path(conf), host)


# RPC calls one pull keeps in flight at most: ``pull_window`` chunk calls,
# or two bulk windows and a chunk call for a window's hole.
def calls_per_pull(conf):
    return max(conf.consolelog.pull_window, 3)


def check_pool(conf, transport_conf=None):
    """Warn when our pulls could take two thirds of the transport's pool.

    Each RPC call borrows a connection of oslo.messaging's pool
    (``[oslo_messaging_rabbit] rpc_conn_pool_size``) while its request is
    published, and a broker under flow control makes that take long:
    inside nova-compute the pool is nova's own, and with the pool empty
    nova's own calls wait. Our pulls keep at most
    ``max_concurrent_imports * calls_per_pull`` calls in flight (by
    default 4 x 4 = 16 of nova's 30), never all publishing at once.

    :returns: ``(calls, pool_size)``; pool_size None when not known.
    """
    calls = conf.consolelog.max_concurrent_imports * calls_per_pull(conf)
    try:
        pool = (transport_conf or conf).oslo_messaging_rabbit.\
            rpc_conn_pool_size
    except Exception:
        return calls, None
    if isinstance(pool, int) and calls > pool * 2 // 3:
        LOG.warning('Console-log pulls may keep %d RPC calls in flight '
                    '(max_concurrent_imports %d x %d), more than two '
                    'thirds of [oslo_messaging_rabbit] rpc_conn_pool_size '
                    '%d: nova\'s own calls could wait for a connection '
                    'during a host drain. Lower max_concurrent_imports or '
                    'pull_window.',
                    calls, conf.consolelog.max_concurrent_imports,
                    calls_per_pull(conf), pool)
    return calls, pool
