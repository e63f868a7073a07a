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

"""What the demo shows: files, where their bytes went, checks, digests.

The steps never raise into a migration (they log a warning and return),
so the demo checks the outcome itself and reports it: the files on both
hosts with their first and last guest lines, the map from each source file
to the history file that holds it now (checked against the bytes), and
the checks.
"""

import dataclasses
import hashlib

from nova_consolelog.objects import fields as cl_fields

READ_PAGE = 1024 * 1024


def sha256(data):
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


def describe_files(chain):
    reports = []
    for f in chain.scan():
        data = _read_member(chain, f.name)
        first, last = _line_span(data)
        reports.append(FileReport(f.name, f.size, sha256(data), first, last))
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


def origins(source_files, dest_chain, dest_stream_head):
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
    found = []
    position = 0
    for f in source_files:
        start = max(0, position - skip)
        end = max(0, position + f.size - skip)
        dropped = f.size - (end - start)
        wanted = dest_stream_head[position:position + f.size][dropped:]
        found.append(Origin(f.name, f.size, newest.name, start, end,
                            dropped, installed[start:end] == wanted))
        position += f.size
    return found
