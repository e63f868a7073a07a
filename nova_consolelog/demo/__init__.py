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
during a live migration (``demo.scenario``), by hosts set up in
``demo.hosts``, with the guest's output written as virtlogd would
(``demo.guest``).

With ``shared=True`` both hosts use one instance directory, as on NFS:
the destination moves the chain aside in ``pre_live_migration``, because
virtlogd unlinks every ``console.log*`` when the incoming QEMU starts; the
source QEMU's last lines still reach the moved file through virtlogd's open
descriptor; the destination installs the moved chain as history by a local
copy, without RPC.

The steps never raise into a migration (they log a warning and return),
so the demo checks the outcome itself: the destination's stream must be the
source's stream followed by what the guest wrote after moving, byte for
byte, and console reads during the hand-over must already show the whole
log (``demo.report``).
"""

import os
import shutil
import tempfile
import uuid as uuid_lib

from nova_consolelog.demo import guest
from nova_consolelog.demo import hosts as demo_hosts
from nova_consolelog.demo import report as demo_report
from nova_consolelog.demo import scenario
from nova_consolelog import exception

# Re-exported: the command and tests name them from here.
DEFAULT_TRANSPORT_URL = demo_hosts.DEFAULT_TRANSPORT_URL
VIRTLOGD_MAX_SIZE = guest.VIRTLOGD_MAX_SIZE
VIRTLOGD_MAX_BACKUPS = guest.VIRTLOGD_MAX_BACKUPS
READ_PAGE = demo_report.READ_PAGE
VirtlogdWriter = guest.VirtlogdWriter
guest_line = guest.guest_line
read_stream = demo_report.read_stream
FileReport = demo_report.FileReport
Origin = demo_report.Origin
Check = demo_report.Check
DemoReport = demo_report.DemoReport
DemoHost = demo_hosts.DemoHost


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
        source = demo_hosts.DemoHost('source-' + suffix, root,
                                     transport_url, chunk_size, common)
        hosts.append(source)
        dest = demo_hosts.DemoHost('dest-' + suffix, root, transport_url,
                                   chunk_size, common)
        hosts.append(dest)
        report = scenario.hand_over(source, dest, root, transport_url,
                                    source_lines, dest_lines, max_size,
                                    tail_lines, shared=bool(shared))
    finally:
        for host in reversed(hosts):
            host.stop()
        if not keep and workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return report
