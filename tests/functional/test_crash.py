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

"""Power cuts and races during a hand-over, on the real RabbitMQ (issue 15).

The destination pulls in a process of its own (tests/functional/
crashdriver.py) that SIGKILLs itself at one step boundary of the
hand-over; the source is a serve-like process that does the same at its
own steps. After each crash the normal retry path runs (the same pull
again, or the periodic ``retry_pending`` of a restarted nova-compute)
and the invariant is checked from the files on both hosts:

* right after the crash, the destination's history holds the source
  chain exactly once and byte-identical, or nothing of it while the
  source's stash is intact; the stash is gone only when the history holds
  it;
* after the retry, the history holds the chain exactly once, the stash is
  gone, no staging file or progress sidecar is left, the ledger names the
  import and no hand-over record is left behind.

Interleavings: two pulls of one stash at once (either of them installing),
a pull racing ``retry_pending``, and a pull of the live chain racing a
virtlogd-style rotation (repeated; the installed history must be the
chain as it was at one instant, never a splice).
"""

import os
import signal
import threading
import time
import uuid

import testtools.content

from nova_consolelog import exception
from nova_consolelog.handover import record as cl_record
from nova_consolelog import history_import
from nova_consolelog import stash as cl_stash
from nova_consolelog import transfer

from tests import fixtures as test_fixtures
from tests.functional import crashes

KiB = crashes.KiB
MiB = crashes.MiB
ROTATION_RUNS = 20


class TestDestinationCrash(crashes.CrashTestCase):
    """SIGKILL of the destination at every step boundary, then a retry."""

    def test_after_open(self):
        """Killed after the source handed the stash over (token granted).

        Nothing is written yet: the stash is intact and a new pull (with a
        new token) installs it.
        """
        self.setup_hosts()
        self.assertEqual('absent', self.crash_and_retry('opened', 'pull'))

    def test_mid_file_bulk(self):
        """Killed after the first bulk chunk reached the staging file.

        The staging file holds bytes no checkpoint vouched for; a new
        process must not trust them and re-fetch.
        """
        self.setup_hosts()
        self.assertEqual('absent',
                         self.crash_and_retry('mid-file', 'process'))

    def test_mid_file_chunks(self):
        """The same on the chunk path (no bulk channel)."""
        self.setup_hosts(bulk_transfer=False)
        self.assertEqual('absent', self.crash_and_retry('mid-file', 'pull'))

    def test_after_checkpoint(self):
        """Killed right after a checkpoint: the retry resumes from it.

        The resumed import is checked on disk as a whole before the
        rename; only the rest is fetched again.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'checkpoint')
        self.assertEqual('absent', self.check_after_crash())
        self.assertTrue(any(n.endswith(history_import.SIDECAR_SUFFIX)
                            for n in self.leftovers()))
        result = self.retry('pull')
        self.assertLess(result.bytes, len(self.expected))
        self.check_done()

    def test_after_checkpoint_damaged_rest(self):
        """After a checkpoint, a staged byte changes (disk, other writer).

        The resumed import must find it on disk before the rename and
        fetch that block again: never install a corrupted byte.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'checkpoint')
        staging = [n for n in self.leftovers()
                   if not n.endswith(history_import.SIDECAR_SUFFIX)]
        self.assertEqual(1, len(staging))
        with open(os.path.join(self.chain.directory, staging[0]),
                  'r+b') as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xff]))
        self.retry('pull')
        self.check_done()

    def test_after_verify(self):
        """Killed after the staged file was fsynced and checked on disk."""
        self.setup_hosts()
        self.assertEqual('absent', self.crash_and_retry('verified', 'pull'))

    def test_after_ledger_before_rename(self):
        """Killed between the ledger write and the rename.

        The ledger names an import whose staging file is still there (same
        inode): the retry — the periodic task, record 'pulling' — must
        resume and install it, not take it for installed.
        """
        self.setup_hosts()
        self.assertEqual('absent',
                         self.crash_and_retry('ledger', 'pulling'))

    def test_after_rename_pull(self):
        """Killed right after the rename, before any release.

        The history is in place and the stash intact; the same pull run
        again must find it installed (ledger) and only release.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'renamed')
        self.assertEqual('installed', self.check_after_crash())
        result = self.retry('pull')
        self.assertEqual(0, result.bytes)
        self.check_done()

    def test_after_rename_retry_installed(self):
        """The same, retried by the periodic task (record 'installed')."""
        self.setup_hosts()
        self.assertEqual('installed',
                         self.crash_and_retry('renamed', 'installed'))

    def test_release_before_send(self):
        """Killed as the release is about to be sent: installed, kept."""
        self.setup_hosts()
        self.assertEqual('installed',
                         self.crash_and_retry('release-before', 'pull'))

    def test_release_after_answer(self):
        """Killed after the source released: the retry only tidies up.

        The stash is gone and the history holds it. A re-run of the same
        pull must find the import in the ledger and end well (there is
        nothing left to release), not fail because the stash is gone; the
        periodic task then ends the record.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'release-after')
        self.assertEqual('released', self.check_after_crash())
        try:
            result = transfer.pull(self.conf, self.rpcapi, 'src',
                                   self.instance, stash_id=self.stash_id,
                                   chain=self.chain, local_host='dst')
        except exception.StashNotFound as e:
            self.fail('a re-run of an installed and released import '
                      'fails: %s' % e)
        finally:
            self.check_after_crash()
        self.assertEqual(self.chain.history()[0].name, result.installed)
        self.retry(cl_record.State.INSTALLED)
        self.check_done()


class TestAbandonedImports(crashes.CrashTestCase):
    """Staging files left by a crash reach an end (remove_abandoned)."""

    def test_removed_after_crash(self):
        """A crashed pull's staging file and sidecar go after their age.

        Models a source that never comes back (or under another name): the
        periodic cleanup removes what nobody holds; the history and the
        source's stash are untouched, and a later pull starts over.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'checkpoint')
        left = self.leftovers()
        self.assertEqual(2, len(left))
        self.assertEqual(left, sorted(self.chain.remove_partials(0)))
        self.assertEqual([], self.leftovers())
        self.assertEqual('absent', self.check_after_crash())
        result = self.retry('pull')
        self.assertEqual(len(self.expected), result.bytes)
        self.check_done()

    def test_removed_after_crash_between_ledger_and_rename(self):
        """The cleanup takes a staging file the ledger already names.

        Killed between the ledger write and the rename, then the staging
        file is removed as abandoned (the host was down for its age). The
        ledger entry stays: the next pull sees an entry whose inode is not
        at the staging path, takes the import for installed and releases
        the source's stash — which the history does not hold.
        """
        self.setup_hosts()
        self.dest.crash(self.instance, self.stash_id, 'ledger')
        self.assertEqual('absent', self.check_after_crash())
        self.assertEqual(2, len(self.chain.remove_partials(0)))
        try:
            transfer.pull(self.conf, self.rpcapi, 'src', self.instance,
                          stash_id=self.stash_id, chain=self.chain,
                          local_host='dst')
        except exception.ConsoleLogError:
            pass
        # Whatever the pull did: installed, or the stash kept.
        self.check_after_crash()

    def test_held_staging_kept(self):
        """A staging file a running pull holds (its flock) is kept."""
        self.setup_hosts()
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='checkpoint')
        crashes.Destination.wait_line(first, b'paused')
        left = self.leftovers()
        self.assertEqual([], self.chain.remove_partials(0))
        self.assertEqual(left, self.leftovers())
        first.send_signal(signal.SIGCONT)
        self.assertTrue(self.dest.finish(first)['released'])
        self.check_done()


class TestMigrationCrash(crashes.CrashTestCase):
    """The destination killed inside post_live_migration_at_destination.

    nova-compute restarts and its periodic ``retry_pending`` finds the
    hand-over record the step left.
    """

    def test_mid_file(self):
        """Killed mid-pull: record 'pulling', nothing installed."""
        self.setup_hosts()
        self.assertEqual('absent', self.crash_and_retry(
            'mid-file', 'pulling', via='migration'))

    def test_after_rename(self):
        """Killed after the rename, before the record says installed."""
        self.setup_hosts()
        self.assertEqual('installed', self.crash_and_retry(
            'renamed', 'pulling', via='migration'))

    def test_after_record_installed(self):
        """Killed right after the record was updated to 'installed'."""
        self.setup_hosts()
        self.assertEqual('installed', self.crash_and_retry(
            'installed', cl_record.State.INSTALLED, via='migration'))

    def test_release_before_send(self):
        """Killed as the release is about to be sent."""
        self.setup_hosts()
        self.assertEqual('installed', self.crash_and_retry(
            'release-before', cl_record.State.INSTALLED, via='migration'))

    def test_release_after_answer(self):
        """Killed after the source released, before the record went."""
        self.setup_hosts()
        self.assertEqual('released', self.crash_and_retry(
            'release-after', cl_record.State.INSTALLED, via='migration'))


class TestSourceCrash(crashes.CrashTestCase):
    """SIGKILL of the source at its steps; restarted, pulled again."""

    def pull_fails(self):
        self.assertRaises(exception.TransferFailed, transfer.pull,
                          self.conf, self.rpcapi, 'src', self.instance,
                          stash_id=self.stash_id, chain=self.chain,
                          local_host='dst')

    def restart_source(self):
        self.src.wait_dead()
        self.src.point = None
        self.src.start()

    def test_mid_window_bulk(self):
        """Killed publishing a bulk window (send_console_log_range)."""
        self.setup_hosts(source_point='read-mid')
        self.pull_fails()
        self.assertEqual('absent', self.check_after_crash())
        self.restart_source()
        self.retry('pull')
        self.check_done()

    def test_mid_window_chunks(self):
        """Killed answering a chunk call (read_console_log_chunk)."""
        self.setup_hosts(source_point='read-mid', bulk_transfer=False)
        self.pull_fails()
        self.assertEqual('absent', self.check_after_crash())
        self.restart_source()
        self.retry('pull')
        self.check_done()

    def _installed_unreleased(self):
        result = transfer.pull(self.conf, self.rpcapi, 'src', self.instance,
                               stash_id=self.stash_id, chain=self.chain,
                               local_host='dst')
        self.assertFalse(result.released)
        return self.check_after_crash()

    def test_release_before_delete(self):
        """Killed in the release after the checks, before the delete."""
        self.setup_hosts(source_point='release-before')
        self.assertEqual('installed', self._installed_unreleased())
        self.restart_source()
        result = self.retry('pull')
        self.assertEqual(0, result.bytes)
        self.check_done()

    def test_release_after_delete(self):
        """Killed after the stash was deleted, before answering."""
        self.setup_hosts(source_point='release-after')
        self.assertEqual('released', self._installed_unreleased())
        self.restart_source()
        self.retry(cl_record.State.INSTALLED)
        self.check_done()

    def test_release_mid_delete(self):
        """Killed half way through deleting the stash (one file gone).

        The stash must not be handed out as a smaller chain to a puller
        that would install it; the destination that has it only releases.
        """
        self.setup_hosts(source_point='release-mid')
        result = transfer.pull(self.conf, self.rpcapi, 'src', self.instance,
                               stash_id=self.stash_id, chain=self.chain,
                               local_host='dst')
        self.assertFalse(result.released)
        self.assertEqual(crashes.digest(self.expected),
                         crashes.digest(self.history(self.chain)))
        self.assertEqual(len(self.FILES) - 1, len(self.stash_files()))
        self.restart_source()
        self.retry(cl_record.State.INSTALLED)
        self.check_done()


class TestInterleavings(crashes.CrashTestCase):
    """Two pulls of one stash at once, a pull and the periodic retry."""

    def test_second_waits_for_first(self):
        """First holds the staging file (stopped mid-file); second waits.

        The first resumes and installs; the second finds it installed.
        """
        self.setup_hosts()
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='mid-file')
        crashes.Destination.wait_line(first, b'paused')
        second = self.dest.start(self.instance, self.stash_id)
        crashes.Destination.wait_line(second, b'waiting')
        first.send_signal(signal.SIGCONT)
        one = self.dest.finish(first)
        two = self.dest.finish(second)
        self.assertEqual(one['installed'], two['installed'])
        self.assertEqual(0, two['bytes'])
        self.assertTrue(one['released'] or two['released'])
        self.check_done()

    def test_two_started_at_once(self):
        """Two pull processes started together, three times over.

        Whichever gets the staging file installs; the other waits and finds
        the import installed — or, when the first has released the stash
        before the second even opened it, must still end well (the same
        case as TestDestinationCrash.test_release_after_answer).
        """
        for _round in range(3):
            self.setup_hosts()
            procs = [self.dest.start(self.instance, self.stash_id)
                     for _ in range(2)]
            outcomes = [self.dest.finish(p) for p in procs]
            self.assertEqual([], [o for o in outcomes if 'error' in o])
            self.assertEqual(1, len({o['installed'] for o in outcomes}))
            self.assertEqual(sorted([0, len(self.expected)]),
                             sorted(o['bytes'] for o in outcomes))
            self.check_done()
            self.src.stop()

    def test_holder_killed_while_second_waits(self):
        """The pull holding the staging file dies; the waiting one goes on.

        The kernel drops the dead pull's flock: the second takes the file
        over, resumes from its checkpoint and installs exactly once.
        """
        self.setup_hosts()
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='checkpoint')
        crashes.Destination.wait_line(first, b'paused')
        second = self.dest.start(self.instance, self.stash_id)
        crashes.Destination.wait_line(second, b'waiting')
        first.kill()
        first.wait()
        two = self.dest.finish(second)
        self.assertTrue(two['released'])
        self.assertLess(two['bytes'], len(self.expected))
        self.check_done()

    def test_second_overtakes_first(self):
        """First stopped after opening; the second pulls and releases.

        The first then finds the import in the ledger and does not install
        it again (its release finds the stash gone: only a warning).
        """
        self.setup_hosts()
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='opened')
        crashes.Destination.wait_line(first, b'paused')
        two = self.dest.run(self.instance, self.stash_id)
        self.assertTrue(two['released'])
        first.send_signal(signal.SIGCONT)
        one = self.dest.finish(first)
        self.assertEqual(two['installed'], one['installed'])
        self.assertEqual(0, one['bytes'])
        self.check_done()

    def test_pull_races_retry_pending(self):
        """A pull process and the periodic task, at once, same instance."""
        self.setup_hosts()
        record = self.mig.record(self.instance)
        record.save(role=cl_record.Role.DESTINATION, peer='src',
                    shared=False, state='pulling')
        proc = self.dest.start(self.instance, self.stash_id)
        self.mig.retry_pending()
        self.dest.finish(proc)
        # The pull may have released the stash under the periodic task's
        # release: its next run ends the record.
        self.mig.retry_pending()
        self.assertIsNone(record.load())
        self.check_done()

    def test_retry_pending_races_migration_step(self):
        """The periodic task fires while the migration step still pulls.

        nova-compute runs its periodic tasks beside the RPC handlers: while
        ``post_live_migration_at_destination`` pulls (record 'pulling',
        here stopped mid-file holding the staging file), ``retry_pending``
        takes the record for an owed import and pulls too. One installs,
        the other finds it installed; both end, and so must the record.
        """
        self.setup_hosts()
        record = self.mig.record(self.instance)
        record.save(role=cl_record.Role.DESTINATION, peer='src',
                    shared=False, state='pulling')
        first = self.dest.start(self.instance, self.stash_id,
                                pause_at='mid-file', via='migration')
        crashes.Destination.wait_line(first, b'paused')
        done = []
        thread = threading.Thread(
            target=lambda: done.append(self.mig.retry_pending()))
        thread.start()
        time.sleep(2)
        first.send_signal(signal.SIGCONT)
        self.dest.finish(first)
        thread.join(crashes.RUN_TIMEOUT)
        self.assertEqual([[self.instance]], done)
        # A second run of the periodic task may be needed for the
        # release; after it no record may be left.
        self.mig.retry_pending()
        self.assertIsNone(record.load())
        self.check_done()


class Rotator:
    """virtlogd in a loop: append to console.log, roll over at max_size.

    The stream is numbered lines of 16 bytes, so that any installed byte
    sequence tells where in the stream it comes from. ``starts`` holds the
    stream line every file of the chain ever started at.
    """

    LINE = 16

    def __init__(self, directory, backups=3, max_size=192 * KiB,
                 step=8 * KiB):
        self.directory = directory
        self.backups = backups
        self.max_size = max_size
        self.step = step // self.LINE
        self.next_line = 0
        self.starts = {0}
        self.rotations = 0
        self.stop = threading.Event()
        self.thread = None
        self.error = None

    @classmethod
    def line(cls, number):
        return b'%015d\n' % number

    @classmethod
    def stream(cls, first, length):
        lines = -(-length // cls.LINE)
        return b''.join(cls.line(n) for n in range(first, first + lines))[
            :length]

    def path(self, name):
        return os.path.join(self.directory, name)

    def write(self):
        data = b''.join(self.line(n) for n in range(
            self.next_line, self.next_line + self.step))
        with open(self.path('console.log'), 'ab') as f:
            f.write(data)
        self.next_line += self.step
        if os.path.getsize(self.path('console.log')) >= self.max_size:
            self.rotate()

    def rotate(self):
        last = self.path('console.log.%d' % (self.backups - 1))
        if os.path.exists(last):
            os.unlink(last)
        for i in range(self.backups - 2, -1, -1):
            if os.path.exists(self.path('console.log.%d' % i)):
                os.rename(self.path('console.log.%d' % i),
                          self.path('console.log.%d' % (i + 1)))
        os.rename(self.path('console.log'), self.path('console.log.0'))
        self.starts.add(self.next_line)
        with open(self.path('console.log'), 'wb'):
            pass
        self.rotations += 1

    def fill(self):
        """A full chain: every backup and a half-written console.log."""
        while self.rotations < self.backups + 1:
            self.write()
        for _ in range(self.max_size // self.LINE // self.step // 2):
            self.write()

    def _loop(self):
        try:
            while not self.stop.is_set():
                self.write()
                time.sleep(0.001)
        except Exception as e:
            self.error = e

    def start(self):
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def join(self):
        self.stop.set()
        self.thread.join(10)


class TestRotationRace(crashes.CrashTestCase):
    """A pull of the live chain while virtlogd keeps rolling it over."""

    def check_snapshot(self, history):
        """``history`` is the chain as it was at one instant.

        It must start where a file of the chain started and be one
        contiguous piece of the stream: any splice (bytes of a file read
        after it was renamed, or of another file under the same name)
        breaks the numbering.
        """
        self.assertGreater(len(history), 0)
        first = int(history[:Rotator.LINE])
        self.assertIn(first, self.rotator.starts,
                      'the history does not start at a file of the chain')
        expected = Rotator.stream(first, len(history))
        if history != expected:
            at = next(i for i in range(len(history))
                      if history[i] != expected[i])
            self.fail('installed history is spliced at byte %d of %d: %r '
                      'where the stream has %r' % (
                          at, len(history), history[at:at + 32],
                          expected[at:at + 32]))

    def test_live_pull_races_rotation(self):
        src = self.start_source()
        instance = str(uuid.uuid4())
        directory = test_fixtures.write_chain(src.conf, instance, {})
        self.rotator = Rotator(directory)
        self.rotator.fill()
        clients = [self.client('dst', chunk_size=64 * KiB,
                               bulk_window=256 * KiB),
                   self.client('dst', chunk_size=64 * KiB,
                               bulk_transfer=False)]
        chain = self.dest_chain(clients[0][0], instance)
        self.rotator.start()
        self.addCleanup(self.rotator.join)
        raced = 0
        sizes = []
        for run in range(ROTATION_RUNS):
            conf, rpcapi = clients[run % 2]
            before = self.rotator.rotations
            result = transfer.pull(conf, rpcapi, 'src', instance,
                                   chain=chain, local_host='dst')
            raced += self.rotator.rotations > before
            self.assertTrue(result.released)
            path = os.path.join(chain.directory, result.installed)
            with open(path, 'rb') as f:
                history = f.read()
            self.check_snapshot(history)
            sizes.append(len(history))
            os.unlink(path)
        self.rotator.join()
        stats = ('%d runs, %d with a rollover during the pull, %d rollovers '
                 'in all, history %d..%d bytes' % (
                     ROTATION_RUNS, raced, self.rotator.rotations,
                     min(sizes), max(sizes)))
        self.addDetail('rotation', testtools.content.text_content(stats))
        if os.environ.get('CONSOLELOG_RACE_STATS'):
            with open(os.environ['CONSOLELOG_RACE_STATS'], 'a') as f:
                f.write(stats + '\n')
        self.assertIsNone(self.rotator.error)
        # Most pulls had virtlogd roll over under them.
        self.assertGreater(raced, ROTATION_RUNS // 2)
        self.assertEqual([], self.leftovers_of(chain))
        pins = cl_stash.pin_root(src.conf.consolelog.stash_path)
        self.assertEqual([], cl_stash.Stash.list(instance, root=pins,
                                                 conf=src.conf))

    def test_splice_is_detected(self):
        """The check above fails on a splice (it is not vacuous)."""
        self.rotator = Rotator(self.root)
        self.rotator.starts.add(0)
        whole = Rotator.stream(0, 64 * KiB)
        self.assertRaises(self.failureException, self.check_snapshot,
                          whole[:20 * KiB] + whole[24 * KiB:])
        self.assertRaises(self.failureException, self.check_snapshot,
                          whole[:20 * KiB] + whole[16 * KiB:])
        self.assertRaises(self.failureException, self.check_snapshot,
                          whole[16:])
        self.check_snapshot(whole)

    @staticmethod
    def leftovers_of(chain):
        return sorted(n for n in os.listdir(chain.directory)
                      if n.startswith(history_import.PARTIAL_PREFIX))
