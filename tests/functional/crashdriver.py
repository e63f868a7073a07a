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

"""Processes that lose power at a chosen step of a hand-over (test_crash).

``python -m tests.functional.crashdriver dest --point P
--config-file F --transport-url URL --instance UUID --stash-id ID`` pulls
a stash like the destination of a live migration does (``--via pull``:
``transfer.pull``; ``--via migration``:
``ConsoleLogMigration.post_live_migration_at_destination``), and at crash
point P sends itself SIGKILL: no ``finally`` block runs, no buffer is
flushed, the kernel drops its flocks — what a power cut leaves of that
process. ``--pause-at P`` stops it there instead (SIGSTOP, after printing
``paused P``), for the interleaving tests. Without a point the pull runs
to its end and its outcome is printed as ``result <json>``.

``... crashdriver source --point P --config-file F --host H
--transport-url URL`` serves like ``nova-consolelog serve`` (it prints
``serving`` when ready) and kills itself at source point P.
"""

import argparse
import fcntl
import functools
import json
import os
import signal
import sys
import threading


from nova_consolelog import exception
from nova_consolelog.handover import record as cl_record
from nova_consolelog import history_import
from nova_consolelog import import_ledger
from nova_consolelog import migration
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import manager as cl_manager
from nova_consolelog.rpc import server as cl_server
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer
from nova_consolelog.transfer import job as transfer_job

from tests import fixtures as test_fixtures

DEST_POINTS = ('opened', 'mid-file', 'checkpoint', 'verified', 'ledger',
               'renamed', 'installed', 'release-before', 'release-after')
SOURCE_POINTS = ('read-mid', 'release-before', 'release-after',
                 'release-mid')
# Source point read-mid: the read (chunk call, or chunk of a bulk window)
# that is not answered.
SOURCE_READ_AT = 6
# A checkpoint every this many bytes, so that one falls inside a file.
CHECKPOINT_BYTES = 512 * 1024


def _say(text):
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


class Trap:
    """What happens at the crash (or pause) point."""

    def __init__(self, point, pause=False):
        self.point = point
        self.pause = pause
        self._lock = threading.Lock()
        self._sprung = False

    def spring(self, point):
        if point != self.point:
            return
        with self._lock:
            if self._sprung:
                return
            self._sprung = True
        if self.pause:
            _say('paused %s' % point)
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        # A power cut of this process: nothing after this line runs.
        os.kill(os.getpid(), signal.SIGKILL)


def _after(owner, attr, trap, point, when=None):
    """Spring ``trap`` at ``point`` after ``owner.attr`` returned."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if when is None or when(*args, **kwargs):
            trap.spring(point)
        return result
    setattr(owner, attr, wrapper)


def _before(owner, attr, trap, point):
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        trap.spring(point)
        return original(*args, **kwargs)
    setattr(owner, attr, wrapper)


def _is_install_rename(src, dst, *args, **kwargs):
    return (os.path.basename(src).startswith(history_import.PARTIAL_PREFIX)
            and os.path.basename(dst).startswith('console.history.'))


def arm_destination(trap):
    """Patch the destination's step boundaries to spring ``trap``."""
    if trap.point is None:
        return
    # Opened: the source handed the stash over and granted a token.
    _after(cl_api.ConsoleLogAPI, 'open_transfer', trap, 'opened')
    # Mid-file: the first chunk is in the staging file, nothing durable.
    _after(history_import.Import, 'write', trap, 'mid-file')
    # A checkpoint: the staging file fsynced, progress in the sidecar.
    _after(history_import.Import, 'checkpoint', trap, 'checkpoint')
    # The staged file fsynced and checked on disk against the hash lists.
    _after(history_import.Import, 'verify', trap, 'verified')
    # The ledger names the import; the staging file is not renamed yet.
    _after(import_ledger.Ledger, 'add', trap, 'ledger')
    # The staging file is history now; no release has been asked.
    _after(os, 'rename', trap, 'renamed', when=_is_install_rename)
    # The hand-over record says 'installed' (migration path only).
    _after(cl_record.HandoverRecord, 'update', trap, 'installed',
           when=lambda self, **c: c.get('state') ==
           cl_record.State.INSTALLED)
    # Release: before the request leaves, after the source answered.
    _before(cl_api.ConsoleLogAPI, 'release', trap, 'release-before')
    _after(cl_api.ConsoleLogAPI, 'release', trap, 'release-after')


def announce_lock_waits():
    """Print ``waiting`` once when a staging file's flock is taken."""
    original = fcntl.flock
    said = []

    def flock(fd, operation):
        try:
            return original(fd, operation)
        except BlockingIOError:
            if not said:
                said.append(True)
                _say('waiting')
            raise
    fcntl.flock = flock


def _conf(config_file):
    return test_fixtures.new_conf(config_file, messaging=True,
                                  project='nova')


def run_destination(args):
    transfer_job.CHECKPOINT_BYTES = CHECKPOINT_BYTES
    trap = Trap(args.point or args.pause_at, pause=bool(args.pause_at))
    arm_destination(trap)
    announce_lock_waits()
    conf = _conf(args.config_file)
    rpcapi = cl_api.ConsoleLogAPI(conf, transport_url=args.transport_url)
    try:
        if args.via == 'migration':
            mig = migration.ConsoleLogMigration(conf, args.host, rpcapi)
            mig.post_live_migration_at_destination(args.instance,
                                                   args.source, False)
            outcome = {'record': mig.record(args.instance).load()}
        else:
            try:
                result = transfer.pull(conf, rpcapi, args.source,
                                       args.instance,
                                       stash_id=args.stash_id,
                                       local_host=args.host)
                outcome = {'released': result.released,
                           'installed': result.installed,
                           'bytes': result.bytes}
            except exception.ConsoleLogError as e:
                outcome = {'error': type(e).__name__, 'reason': str(e)}
        _say('result ' + json.dumps(outcome))
    finally:
        rpcapi.transport.cleanup()
    return 0


def arm_source(point):
    """Patch the source endpoint to die at ``point``."""
    if point == 'read-mid':
        # Mid-window: a read of a chunk call or of a bulk window (both
        # go through _read) after the first few were answered.
        original = cl_manager.ConsoleLogManager._read
        count = [0]
        lock = threading.Lock()

        def _read(self, *args, **kwargs):
            with lock:
                count[0] += 1
                if count[0] >= SOURCE_READ_AT:
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args, **kwargs)
        cl_manager.ConsoleLogManager._read = _read
    elif point == 'release-before':
        # The release is checked (token, roots) and the stash not touched.
        trap = Trap(point)
        _after(cl_stash.Stash, 'check_release', trap, point)
    elif point == 'release-after':
        # The stash is deleted; the puller never hears back.
        trap = Trap(point)
        _after(cl_stash.Stash, 'release', trap, point)
    elif point == 'release-mid':
        # Half of the stash's rmtree done: one data file gone.
        def release(self):
            names = sorted(n for n in os.listdir(self.path)
                           if n.startswith('console.'))
            os.unlink(os.path.join(self.path, names[0]))
            os.kill(os.getpid(), signal.SIGKILL)
        cl_stash.Stash.release = release


def run_source(args):
    arm_source(args.point)
    conf = _conf(args.config_file)
    server = cl_server.ConsoleLogServer(
        conf, args.host, transport_url=args.transport_url,
        endpoint=cl_manager.ConsoleLogManager(conf, args.host))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    _say('serving %s on %s' % (args.host, conf.consolelog.topic))
    while not stop.wait(1):
        pass
    server.stop()
    return 0


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('role', choices=('dest', 'source'))
    parser.add_argument('--point')
    parser.add_argument('--pause-at')
    parser.add_argument('--config-file', required=True)
    parser.add_argument('--host', required=True)
    parser.add_argument('--transport-url', required=True)
    parser.add_argument('--instance')
    parser.add_argument('--source', default='src')
    parser.add_argument('--stash-id')
    parser.add_argument('--via', choices=('pull', 'migration'),
                        default='pull')
    args = parser.parse_args(argv)
    points = DEST_POINTS if args.role == 'dest' else SOURCE_POINTS
    for point in (args.point, args.pause_at):
        if point is not None and point not in points:
            parser.error('unknown %s point %s' % (args.role, point))
    if args.role == 'dest':
        return run_destination(args)
    return run_source(args)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
