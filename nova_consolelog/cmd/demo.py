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

"""``nova-consolelog demo``: a console-log hand-over, shown end to end.

The work is in ``nova_consolelog.demo``; this module parses the arguments
and prints the report. The exit code is 0 only when the destination's
merged console equals the source's byte for byte (and every other check of
the report passed), 1 otherwise.
"""

import re
import sys

from nova_consolelog.cmd import main as cl_main
from nova_consolelog.cmd import status_text
from nova_consolelog import demo as cl_demo

# What nova's console output API strips before returning the text: control
# characters other than tab and newline.
_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f]')


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'demo',
        help='show a console-log hand-over between two hosts in one process',
        description='Start two compute hosts\' console-log endpoints in this '
                    'process, write a console log with virtlogd-style '
                    'rotation backups on the "source", hand it over exactly '
                    'as a live migration does (stash on the source, pull to '
                    'the destination, install as history, release), then '
                    'print the merged console and a report of where every '
                    'byte went. Exit status 0 only when the destination\'s '
                    'merged bytes equal the source\'s.')
    parser.add_argument(
        '--transport-url', metavar='URL', default=None,
        help='oslo.messaging transport for the two hosts, for example '
             'rabbit://guest:guest@127.0.0.1:5672/ (default: fake://, '
             'in-process)')
    parser.add_argument(
        '--shared', action='store_true',
        help='both hosts share one instance directory, as on NFS: the '
             'destination moves the chain aside before its QEMU starts '
             '(virtlogd would truncate it) and installs it locally '
             '(default: each host has its own directory)')
    parser.add_argument(
        '--keep', action='store_true',
        help='keep the temporary instance and stash directories and print '
             'where they are')
    parser.set_defaults(func=run)
    return parser


def format_report(report):
    """The report as text lines."""
    out = []
    add = out.append
    add('nova-consolelog demo: instance %s, %s -> %s over %s, %s' % (
        report.instance_uuid, report.source_host, report.dest_host,
        report.transport_url,
        'shared instance path' if report.shared
        else 'an instance directory per host'))
    add('')
    add('Merged console on %s after the migration (last lines, as the '
        'console output API shows them):' % report.dest_host)
    text = _CONTROL.sub('', report.tail.decode('utf-8', 'replace'))
    for line in text.rstrip('\n').split('\n'):
        add('  | ' + line)
    add('')
    add('Source chain on %s (oldest first):' % report.source_host)
    for f in report.source_files:
        add('  %-16s %10d bytes  sha256 %s  %s .. %s' % (
            f.name, f.size, f.sha256[:16], f.first_line[11:18],
            f.last_line[11:18]))
    add('Destination chain on %s (oldest first):' % report.dest_host)
    for f in report.dest_files:
        add('  %-22s %10d bytes  sha256 %s' % (f.name, f.size,
                                               f.sha256[:16]))
    add('')
    add('Where each source byte went:')
    for o in report.origins:
        dropped = (' (%d oldest bytes dropped by history_max_bytes)' %
                   o.dropped) if o.dropped else ''
        add('  %-16s -> %s [%d, %d)  %s%s' % (
            o.source_name, o.dest_name, o.dest_start, o.dest_end,
            'identical' if o.matches else 'DIFFERENT', dropped))
    add('')
    add('Source stream:      %10d bytes  sha256 %s' % (
        report.source_bytes, report.source_sha256))
    add('Destination copy:   %10d bytes  sha256 %s' % (
        report.dest_bytes, report.dest_sha256))
    add('Written after move: %10d bytes' % report.after_move_bytes)
    rate = (report.source_bytes / report.handover_seconds
            if report.handover_seconds else 0.0)
    add('Hand-over (%s): %.3f s, %s/s' % (
        'install the moved chain as history' if report.shared
        else 'stash, pull, install, release',
        report.handover_seconds, status_text.format_size(rate)))
    if report.transport_url.startswith('fake:'):
        add('  (fake:// spends about 50 ms per call; --transport-url '
            'rabbit://... measures a real broker)')
    add('')
    for c in report.checks:
        add('  [%s] %s%s' % ('ok' if c.ok else 'FAILED', c.what,
                             (': ' + c.detail) if c.detail else ''))
    add('')
    add('RESULT: %s' % ('the destination holds the whole console log, '
                        'byte for byte' if report.ok else 'FAILED'))
    return out


def run(args, conf):
    report = cl_demo.run(transport_url=args.transport_url, keep=args.keep,
                         shared=args.shared)
    for line in format_report(report):
        print(line)
    if args.keep:
        print('Kept the hosts\' directories under %s' % report.workdir)
    sys.stdout.flush()
    return cl_main.EXIT_OK if report.ok else cl_main.EXIT_FAILED
