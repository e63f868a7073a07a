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

"""The hand-over played, step by step, in the order nova calls them.

1. source ``live_migration_started``, destination ``pre_live_migration``;
2. the guest moves: the destination's virtlogd starts a new
   ``console.log`` (the source's chain is untouched so far);
3. source ``post_live_migration_at_source``: the chain goes into a stash,
   because nova's ``cleanup()`` comes next and deletes the instance
   directory — which the demo then does, as nova would;
4. destination ``post_live_migration_at_destination``: pull the stash in
   verified chunks, install it as ``console.history.NNNNNN``, release the
   source's stash.

With a shared instance directory the destination moves the chain aside in
``pre_live_migration`` instead and installs it by a local copy.
The destination's stream must be the source's stream followed by what the
guest wrote after moving, byte for byte, and console reads during the
hand-over must already show the whole log.
"""

import os
import shutil
import time
import uuid as uuid_lib

from nova_consolelog import chain as cl_chain
from nova_consolelog.demo import guest
from nova_consolelog.demo import report as demo_report
from nova_consolelog import stash as cl_stash


class Scenario:
    """The state of one hand-over while it is played."""

    def __init__(self, source, dest, max_size):
        self.source = source
        self.dest = dest
        self.max_size = max_size
        self.instance_uuid = str(uuid_lib.uuid4())
        self.max_bytes = source.conf.consolelog.max_console_bytes
        self.checks = []
        self.counter = 0
        self.after_move = []
        self.dest_writer = None

    def lines(self, count, where):
        first = self.counter + 1
        self.counter += count
        return b''.join(guest.guest_line(n, where)
                        for n in range(first, self.counter + 1))

    def guest_on_source(self, count):
        writer = guest.VirtlogdWriter(
            self.source.instance_dir(self.instance_uuid), self.max_size)
        while count > 0:
            batch = min(count, 1000)
            writer.write(self.lines(batch, self.source.name))
            count -= batch

    def guest_on_dest(self, count):
        """The guest runs on the destination: its virtlogd logs there."""
        if self.dest_writer is None:
            self.dest_writer = guest.VirtlogdWriter(
                self.dest.instance_dir(self.instance_uuid), self.max_size)
        data = self.lines(count, self.dest.name)
        self.after_move.append(data)
        self.dest_writer.write(data)

    def check(self, what, ok, detail=''):
        self.checks.append(demo_report.Check(what, ok, detail))

    def check_read(self, what, source_stream):
        """A console read on the destination shows the whole log now."""
        got = self.dest.steps.get_console_output(self.instance_uuid)
        want = (source_stream + b''.join(self.after_move))[-self.max_bytes:]
        self.check(what, got == want, '%d bytes, last %d expected' % (
            len(got), len(want)))

    def stashes(self, host):
        return cl_stash.Stash.list(self.instance_uuid, root=host.stash_root,
                                   conf=host.conf)


def _non_shared(sc, source_lines, dest_lines):
    """Each host has its own instance directory: stash, pull, release."""
    source, dest, uuid = sc.source, sc.dest, sc.instance_uuid
    sc.guest_on_source(source_lines)
    source_chain = source.chain(uuid)
    source_files = demo_report.describe_files(source_chain)
    source_stream = demo_report.read_stream(source_chain)

    # nova's live migration starts; the guest moves to the destination.
    source.steps.live_migration_started(uuid, dest.name, False)
    dest.steps.pre_live_migration(uuid, source.name, False)
    sc.guest_on_dest(dest_lines // 2)
    sc.check_read('console read on the destination before the source '
                  'stashed', source_stream)

    started = time.monotonic()
    # Source: the migrated domain is off; stash before nova's cleanup.
    source.steps.post_live_migration_at_source(uuid, dest.name, False,
                                               domain=None)
    stashes = sc.stashes(source)
    sc.check('source stashed its chain before cleanup', len(stashes) == 1,
             ', '.join(s.stash_id for s in stashes))
    shutil.rmtree(source.instance_dir(uuid))   # nova's cleanup()
    sc.check_read('console read on the destination after the source '
                  'cleanup', source_stream)

    # Destination: pull, verify, install as history, release.
    dest.steps.post_live_migration_at_destination(uuid, source.name, False)
    seconds = time.monotonic() - started
    source.steps.retry_pending()   # the source's periodic housekeeping
    left = sc.stashes(source)
    sc.check('source released its stash after the destination verified it',
             not left, ', '.join(s.stash_id for s in left))
    return source_files, source_stream, seconds


def _shared(sc, source_lines, dest_lines):
    """Both hosts see one instance directory: move aside, install locally.

    The destination's QEMU start would make virtlogd unlink the source's
    whole chain, so ``pre_live_migration`` moves it into a stash first.
    The source QEMU keeps writing through virtlogd's open descriptor, into
    the moved file, until it stops.
    """
    source, dest, uuid = sc.source, sc.dest, sc.instance_uuid
    sc.guest_on_source(source_lines)
    before = source.chain(uuid)
    source_files = demo_report.describe_files(before)
    source_stream = demo_report.read_stream(before)
    live = open(os.path.join(source.instance_dir(uuid), 'console.log'),
                'ab', buffering=0)   # the source virtlogd's descriptor
    try:
        source.steps.live_migration_started(uuid, dest.name, True)
        dest.steps.pre_live_migration(uuid, source.name, True)
        stashes = sc.stashes(dest)
        sc.check('destination moved the chain aside before its QEMU '
                 'started', len(stashes) == 1,
                 ', '.join(s.stash_id for s in stashes))
        # The source guest's last lines, written after the move.
        late = sc.lines(max(1, source_lines // 1000), source.name)
        live.write(late)
        source_stream += late
    finally:
        live.close()
    if stashes:
        # What the source left: the files as they are now, grown by the
        # late lines.
        source_files = demo_report.describe_files(stashes[0].chain)
    # The destination QEMU starts: virtlogd truncates, then logs anew.
    guest.virtlogd_truncates(dest.instance_dir(uuid))
    sc.guest_on_dest(dest_lines // 2)
    sc.check_read('console read on the destination during the migration',
                  source_stream)

    started = time.monotonic()
    source.steps.post_live_migration_at_source(uuid, dest.name, True,
                                               domain=None)
    # nova keeps a shared instance directory: no cleanup here.
    dest.steps.post_live_migration_at_destination(uuid, source.name, True)
    seconds = time.monotonic() - started
    left = sc.stashes(dest)
    sc.check('destination installed and removed the stash', not left,
             ', '.join(s.stash_id for s in left))
    return source_files, source_stream, seconds


def hand_over(source, dest, root, transport_url, source_lines, dest_lines,
              max_size, tail_lines, shared=False):
    sc = Scenario(source, dest, max_size)
    play = _shared if shared else _non_shared
    source_files, source_stream, seconds = play(sc, source_lines,
                                                dest_lines)

    # The guest goes on writing on the destination.
    sc.guest_on_dest(dest_lines - dest_lines // 2)
    dest_chain = dest.chain(sc.instance_uuid)
    dest_stream = demo_report.read_stream(dest_chain)
    after_move = b''.join(sc.after_move)
    expected = source_stream + after_move
    sc.check('destination stream == source stream + output after the move',
             dest_stream == expected,
             '%d bytes vs %d expected' % (len(dest_stream), len(expected)))
    sc.check_read('console read on the destination at the end',
                  source_stream)
    tail = dest.steps.get_console_output(sc.instance_uuid)
    origins = demo_report.origins(source_files, dest_chain, dest_stream)
    sc.check('every source byte found in the history file',
             bool(origins) and all(o.matches for o in origins))
    copied = dest_stream[:len(dest_stream) - len(after_move)]
    return demo_report.DemoReport(
        instance_uuid=sc.instance_uuid, source_host=source.name,
        dest_host=dest.name, transport_url=transport_url, workdir=root,
        shared=shared, source_files=source_files,
        dest_files=demo_report.describe_files(dest_chain), origins=origins,
        checks=sc.checks, source_bytes=len(source_stream),
        source_sha256=demo_report.sha256(source_stream),
        dest_bytes=len(copied), dest_sha256=demo_report.sha256(copied),
        after_move_bytes=len(after_move), handover_seconds=seconds,
        tail=cl_chain.last_lines(tail, tail_lines))
