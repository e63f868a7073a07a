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

"""A console-log hand-over between two hosts, in one process.

``nova-consolelog demo`` shows the whole feature without nova, libvirt or
QEMU: two compute hosts' console-log endpoints run in this process (on the
``fake://`` transport, whose exchanges every transport of a process shares,
or on a real broker), each host with its own instance directory and stash
root under a temporary directory. The steps are the real ones
(``migration.ConsoleLogMigration``), called in the order nova calls them
during a live migration:

1. source ``live_migration_started``, destination ``pre_live_migration``;
2. the guest moves: the destination's virtlogd starts a new
   ``console.log`` (the source's chain is untouched so far);
3. source ``post_live_migration_at_source``: the chain goes into a stash,
   because nova's ``cleanup()`` comes next and deletes the instance
   directory — which the demo then does, as nova would;
4. destination ``post_live_migration_at_destination``: pull the stash in
   verified chunks, install it as ``console.history.NNNNNN``, release the
   source's stash.

With ``shared=True`` both hosts use one instance directory, as on NFS:
the destination moves the chain aside in ``pre_live_migration``, because
virtlogd unlinks every ``console.log*`` when the incoming QEMU starts; the
source QEMU's last lines still reach the moved file through virtlogd's open
descriptor; the destination installs the moved chain as history by a local
copy, without RPC.

The source chain is written the way virtlogd writes it: files of exactly
``max_size`` bytes (lines may be split between two files), rotated
``console.log`` → ``.0`` → ``.1`` → ``.2``. Every guest line carries a
counter, so the merged console shows at a glance that nothing is missing or
repeated. The steps never raise into a migration (they log a warning and
return), so the demo checks the outcome itself: the destination's stream
must be the source's stream followed by what the guest wrote after moving,
byte for byte, and console reads during the hand-over must already show the
whole log.
"""

import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
import time
import uuid as uuid_lib

from oslo_config import cfg
import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import migration as cl_migration
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import api as cl_api
from nova_consolelog.rpc import server as cl_server
from nova_consolelog.rpc import transport as cl_transport
from nova_consolelog import stash as cl_stash

DEFAULT_TRANSPORT_URL = 'fake://'
# virtlogd's defaults (virtlogd.conf max_size, max_backups).
VIRTLOGD_MAX_SIZE = 2 * 1024 * 1024
VIRTLOGD_MAX_BACKUPS = 3
READ_PAGE = 1024 * 1024


class VirtlogdWriter:
    """Appends guest output to a directory the way virtlogd does.

    virtlogd fills ``console.log`` up to exactly ``max_size`` bytes, then
    rotates: the oldest backup is deleted, ``console.log.i`` becomes
    ``console.log.i+1`` and ``console.log`` becomes ``console.log.0``.
    """

    def __init__(self, directory, max_size=VIRTLOGD_MAX_SIZE,
                 max_backups=VIRTLOGD_MAX_BACKUPS, log_name='console.log'):
        self.directory = directory
        self.max_size = max_size
        self.max_backups = max_backups
        self.log_name = log_name
        os.makedirs(directory, exist_ok=True)

    def _path(self, index=None):
        name = self.log_name if index is None else '%s.%d' % (
            self.log_name, index)
        return os.path.join(self.directory, name)

    def _rotate(self):
        oldest = self._path(self.max_backups - 1)
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(self.max_backups - 2, -1, -1):
            if os.path.exists(self._path(i)):
                os.rename(self._path(i), self._path(i + 1))
        os.rename(self._path(), self._path(0))

    def write(self, data):
        while data:
            path = self._path()
            size = os.path.getsize(path) if os.path.exists(path) else 0
            room = self.max_size - size
            if room <= 0:
                self._rotate()
                continue
            with open(path, 'ab') as f:
                f.write(data[:room])
            data = data[room:]


def guest_line(counter, where):
    """One line of guest output, with a counter.

    Every tenth line carries escape sequences and bytes that are not UTF-8,
    as real consoles do: the hand-over must keep every byte as it is.
    """
    extra = b''
    if counter % 10 == 0:
        extra = b' \x1b[1;32m[  OK  ]\x1b[0m \xff\xfe'
    return b'guest line %07d on %s: the quick brown fox%s\r\n' % (
        counter, where.encode('ascii'), extra)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_stream(chain):
    """The chain's whole merged stream (history, backups, console.log)."""
    parts = []
    offset = 0
    while True:
        result = chain.read(offset, READ_PAGE)
        if not result.data:
            return b''.join(parts)
        parts.append(result.data)
        offset = result.next


@dataclasses.dataclass
class FileReport:
    name: str
    size: int
    sha256: str
    first_line: str = ''
    last_line: str = ''


@dataclasses.dataclass
class Origin:
    """Where the bytes of one source file ended up on the destination."""

    source_name: str
    size: int
    dest_name: str
    dest_start: int
    dest_end: int
    # Bytes of the source file that retention dropped (history_max_bytes).
    dropped: int
    matches: bool


@dataclasses.dataclass
class Check:
    what: str
    ok: bool
    detail: str = ''


@dataclasses.dataclass
class DemoReport:
    instance_uuid: str
    source_host: str
    dest_host: str
    transport_url: str
    workdir: str
    shared: bool
    source_files: list
    dest_files: list
    origins: list
    checks: list
    source_bytes: int = 0
    source_sha256: str = ''
    dest_bytes: int = 0
    dest_sha256: str = ''
    after_move_bytes: int = 0
    handover_seconds: float = 0.0
    tail: bytes = b''

    @property
    def ok(self):
        return all(c.ok for c in self.checks)


def _check_reachable(transport_url, timeout=3.0):
    """Fail fast when a broker does not answer.

    oslo.messaging would otherwise retry its connection for ever and the
    demo would hang without a word.
    """
    url = oslo_messaging.TransportURL.parse(cfg.CONF, transport_url)
    for host in url.hosts:
        if not host.hostname:
            continue
        try:
            socket.create_connection((host.hostname, host.port or 5672),
                                     timeout).close()
        except OSError as e:
            raise exception.InvalidInput(
                reason='no message broker answers at %s:%s (%s); for the '
                       'local RabbitMQ run tools/ensure-rabbitmq.sh' % (
                           host.hostname, host.port or 5672, e))


class DemoHost:
    """One compute host: its configuration, endpoint, client and steps."""

    def __init__(self, name, root, transport_url, chunk_size=None,
                 instances_path=None):
        self.name = name
        self.instances_path = instances_path or os.path.join(
            root, name, 'instances')
        os.makedirs(self.instances_path, exist_ok=True)
        self.conf = cfg.ConfigOpts()
        cl_conf.register_opts(self.conf)
        self.conf(args=[], project='nova-consolelog-demo',
                  default_config_files=[])
        self.conf.set_override('instances_path', self.instances_path,
                               group=cl_conf.GROUP)
        if chunk_size:
            self.conf.set_override('chunk_size', chunk_size,
                                   group=cl_conf.GROUP)
        try:
            self.transport = cl_transport.get_transport(self.conf,
                                                        transport_url)
        except oslo_messaging.MessagingException as e:
            raise exception.InvalidInput(
                reason='cannot use transport URL %r: %s' % (
                    transport_url, e))
        _check_reachable(transport_url)
        self.server = None
        try:
            self.server = cl_server.ConsoleLogServer(
                self.conf, name, transport=self.transport).start()
            self.rpcapi = cl_api.ConsoleLogAPI(self.conf,
                                               transport=self.transport)
        except Exception:
            self.stop()
            raise
        self.steps = cl_migration.ConsoleLogMigration(
            self.conf, name, self.rpcapi,
            instances_path=self.instances_path)

    @property
    def stash_root(self):
        return cl_conf.stash_path(self.conf)

    def instance_dir(self, instance_uuid):
        return os.path.join(self.instances_path, instance_uuid)

    def chain(self, instance_uuid):
        return cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                     conf=self.conf)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.transport is not None:
            self.transport.cleanup()
            self.transport = None


def _line_span(data):
    """First and last complete guest line of ``data`` (for the report)."""
    pieces = data.split(b'\r\n')
    if not data.endswith(b'\r\n'):
        pieces.pop()   # a line virtlogd split between two files
    lines = [x for x in pieces if x.startswith(b'guest line')]
    if not lines:
        return '', ''
    first, last = lines[0], lines[-1]
    return (first[:32].decode('ascii', 'replace'),
            last[:32].decode('ascii', 'replace'))


def _describe_files(chain):
    reports = []
    for f in chain.scan():
        data = _read_member(chain, f.name)
        first, last = _line_span(data)
        reports.append(FileReport(f.name, f.size, _sha256(data), first, last))
    return reports


def _read_member(chain, name):
    parts = []
    offset = 0
    while True:
        data, eof = chain.read_chunk(name, offset, READ_PAGE)
        parts.append(data)
        offset += len(data)
        if eof or not data:
            return b''.join(parts)


def _origins(source_files, dest_chain, dest_stream_head):
    """Map each source file onto the history file that holds it now.

    An import concatenates the source files oldest first into one history
    file, minus the oldest bytes beyond ``history_max_bytes``; so the map
    is arithmetic, and each range is checked against the bytes themselves.
    """
    history = [f for f in dest_chain.scan()
               if f.kind == cl_fields.FileKind.HISTORY]
    if not history:
        return []
    newest = history[-1]
    total = sum(f.size for f in source_files)
    skip = max(0, total - newest.size)
    installed = _read_member(dest_chain, newest.name)
    origins = []
    position = 0
    for f in source_files:
        start = max(0, position - skip)
        end = max(0, position + f.size - skip)
        dropped = f.size - (end - start)
        wanted = dest_stream_head[position:position + f.size][dropped:]
        origins.append(Origin(f.name, f.size, newest.name, start, end,
                              dropped, installed[start:end] == wanted))
        position += f.size
    return origins


def run(transport_url=None, keep=False, shared=False, source_lines=120000,
        dest_lines=200, max_size=VIRTLOGD_MAX_SIZE, chunk_size=None,
        tail_lines=12, workdir=None):
    """Run the demo; returns a DemoReport (``report.ok`` tells success).

    :param transport_url: oslo.messaging URL; default ``fake://``.
    :param keep: keep the temporary directory (its path is in the report).
    :param shared: both hosts share one instance directory (NFS-style);
        default: each host has its own.
    :param source_lines: guest lines written on the source before the
        migration (about 60 bytes each: the default fills three 2 MiB
        backups and part of ``console.log``).
    :param dest_lines: lines written on the destination after the move.
    :param max_size: virtlogd's rotation size.
    :param chunk_size: ``[consolelog] chunk_size`` of both hosts.
    """
    transport_url = transport_url or DEFAULT_TRANSPORT_URL
    for what, value in (('source_lines', source_lines),
                        ('dest_lines', dest_lines), ('max_size', max_size),
                        ('tail_lines', tail_lines)):
        if isinstance(value, bool) or not isinstance(value, int) or (
                value < 0):
            raise exception.InvalidInput(
                reason='%s must be a non-negative integer, not %r' % (
                    what, value))
    root = workdir or tempfile.mkdtemp(prefix='nova-consolelog-demo-')
    suffix = uuid_lib.uuid4().hex[:6]
    hosts = []
    try:
        common = os.path.join(root, 'shared', 'instances') if shared \
            else None
        source = DemoHost('source-' + suffix, root, transport_url,
                          chunk_size, common)
        hosts.append(source)
        dest = DemoHost('dest-' + suffix, root, transport_url, chunk_size,
                        common)
        hosts.append(dest)
        report = _hand_over(source, dest, root, transport_url,
                            source_lines, dest_lines, max_size, tail_lines,
                            shared=bool(shared))
    finally:
        for host in reversed(hosts):
            host.stop()
        if not keep and workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return report


class _Scenario:
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
        return b''.join(guest_line(n, where)
                        for n in range(first, self.counter + 1))

    def guest_on_source(self, count):
        writer = VirtlogdWriter(self.source.instance_dir(self.instance_uuid),
                                self.max_size)
        while count > 0:
            batch = min(count, 1000)
            writer.write(self.lines(batch, self.source.name))
            count -= batch

    def guest_on_dest(self, count):
        """The guest runs on the destination: its virtlogd logs there."""
        if self.dest_writer is None:
            self.dest_writer = VirtlogdWriter(
                self.dest.instance_dir(self.instance_uuid), self.max_size)
        data = self.lines(count, self.dest.name)
        self.after_move.append(data)
        self.dest_writer.write(data)

    def check(self, what, ok, detail=''):
        self.checks.append(Check(what, ok, detail))

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
    source_files = _describe_files(source_chain)
    source_stream = read_stream(source_chain)

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


def _virtlogd_truncates(directory, log_name='console.log'):
    """What virtlogd does at a QEMU start with ``append="off"``."""
    for name in os.listdir(directory):
        if name == log_name or (name.startswith(log_name + '.') and
                                name[len(log_name) + 1:].isdigit()):
            os.unlink(os.path.join(directory, name))


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
    source_files = _describe_files(before)
    source_stream = read_stream(before)
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
        source_files = _describe_files(stashes[0].chain)
    # The destination QEMU starts: virtlogd truncates, then logs anew.
    _virtlogd_truncates(dest.instance_dir(uuid))
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


def _hand_over(source, dest, root, transport_url, source_lines, dest_lines,
               max_size, tail_lines, shared=False):
    sc = _Scenario(source, dest, max_size)
    play = _shared if shared else _non_shared
    source_files, source_stream, seconds = play(sc, source_lines,
                                                dest_lines)

    # The guest goes on writing on the destination.
    sc.guest_on_dest(dest_lines - dest_lines // 2)
    dest_chain = dest.chain(sc.instance_uuid)
    dest_stream = read_stream(dest_chain)
    after_move = b''.join(sc.after_move)
    expected = source_stream + after_move
    sc.check('destination stream == source stream + output after the move',
             dest_stream == expected,
             '%d bytes vs %d expected' % (len(dest_stream), len(expected)))
    sc.check_read('console read on the destination at the end',
                  source_stream)
    tail = dest.steps.get_console_output(sc.instance_uuid)
    origins = _origins(source_files, dest_chain, dest_stream)
    sc.check('every source byte found in the history file',
             bool(origins) and all(o.matches for o in origins))
    copied = dest_stream[:len(dest_stream) - len(after_move)]
    return DemoReport(
        instance_uuid=sc.instance_uuid, source_host=source.name,
        dest_host=dest.name, transport_url=transport_url, workdir=root,
        shared=shared, source_files=source_files,
        dest_files=_describe_files(dest_chain), origins=origins,
        checks=sc.checks, source_bytes=len(source_stream),
        source_sha256=_sha256(source_stream),
        dest_bytes=len(copied), dest_sha256=_sha256(copied),
        after_move_bytes=len(after_move), handover_seconds=seconds,
        tail=cl_chain.last_lines(tail, tail_lines))
