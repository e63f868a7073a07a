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

"""``nova-consolelog show``: print an instance's merged console log.

Without ``--start`` it prints what the console output API returns: the last
``--max-bytes`` of history + backups + ``console.log`` (equal to nova's read
when there is no history), then the last ``--length`` lines. With
``--start S`` it prints one page of the stream from absolute offset ``S``
(negative: the last ``-S`` bytes) and the next offset on standard error.
Raw bytes go to standard output unchanged; ``--format json`` prints
``{data, start, next, truncated, base_offset, files}`` with the data decoded
as UTF-8 (invalid bytes replaced).

Read-only. Exit codes: 0 printed; 2 bad input (a malformed value, no such
instance directory, an instance or stash directory that is a symlink, a
chain member that is a symlink, a directory or not a regular file — nothing
is read through it); 1 an I/O error reading a file.
"""

import argparse
import json
import os
import sys

from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog import exception
from nova_consolelog import fileutils


def _integer(text):
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError('not an integer: %r' % text)


def _count(text):
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError('must not be negative: %d' % value)
    return value


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'show',
        help="print an instance's merged console log (history, backups, "
             'console.log)',
        description='Print the merged console log of an instance on this '
                    'host, as the console output API returns it. Exit '
                    'status: 0 printed, 1 I/O error, 2 bad input.')
    parser.add_argument(
        'instance', metavar='INSTANCE_DIR_OR_UUID',
        help='an instance uuid (looked up under [consolelog] '
             'instances_path) or the path of a directory holding a chain '
             '(an instance directory or a stash)')
    parser.add_argument(
        '--length', type=_count, metavar='N',
        help='only the last N lines, as "console log show --lines N"')
    parser.add_argument(
        '--max-bytes', type=_count, metavar='B',
        help='bytes to read (default: [consolelog] max_console_bytes)')
    parser.add_argument(
        '--start', type=_integer, metavar='S',
        help='page from absolute stream offset S (negative: the last -S '
             'bytes); the next offset is printed on standard error')
    parser.add_argument(
        '--format', choices=('text', 'json'), default='text',
        help='text: the raw bytes; json: data and offsets')
    parser.set_defaults(func=show)
    return parser


def _chain(target, conf):
    """The chain ``target`` names; never through a symbolic link.

    Why: an instance or stash directory that is a symlink points somewhere
    nova did not put it (another instance's files, any directory); reading
    through it would print bytes that are not this instance's console.
    """
    if uuidutils.is_uuid_like(target) and os.sep not in target:
        chain = cl_chain.ConsoleLogChain.for_instance(target, conf=conf)
        directory = chain.directory
        if not os.path.islink(directory):
            return chain  # a missing one: InstanceDirNotFound, exit 2
    else:
        # 'link/' would resolve the link: look at the name itself.
        directory = target.rstrip(os.sep) or os.sep
        if fileutils.is_real_dir(directory):
            return cl_chain.ConsoleLogChain(target, conf=conf)
        if not os.path.islink(directory):
            raise exception.InvalidInput(
                reason='%s is neither an instance uuid nor a directory' % (
                    exception.bounded(target, 200),))
    raise exception.InvalidInput(
        reason='%s is a symbolic link; refusing to follow it' % (
            exception.bounded(directory, 200),))


def _read(args, conf):
    chain = _chain(args.instance, conf)
    if args.start is not None and args.length is not None:
        raise exception.InvalidInput(
            reason='--length applies to the tail, not to a page (--start)')
    if args.format == 'text' and args.start is None:
        return chain, chain.read_tail(args.max_bytes, args.length), None
    max_bytes = (conf.consolelog.max_console_bytes
                 if args.max_bytes is None else args.max_bytes)
    start = -max_bytes if args.start is None else args.start
    page = chain.read(start, max_bytes)
    if args.length is not None:
        data = cl_chain.last_lines(page.data, args.length)
        page = page._replace(data=data, start=page.next - len(data))
    return chain, page.data, page


def show(args, conf):
    try:
        chain, data, page = _read(args, conf)
        files = chain.scan() if args.format == 'json' else []
        base = chain.base_offset() if args.format == 'json' else 0
    except (exception.InstanceDirNotFound, exception.UnsafeChainFile) as e:
        print('nova-consolelog: error: %s' % e, file=sys.stderr)
        return cl_main.EXIT_USAGE
    if args.format == 'json':
        doc = {'data': data.decode('utf-8', 'replace'),
               'start': page.start, 'next': page.next,
               'truncated': page.truncated, 'base_offset': base,
               'files': [{'name': f.name, 'kind': f.kind, 'size': f.size,
                          'mtime': f.mtime} for f in files]}
        sys.stdout.write(json.dumps(doc, indent=1, sort_keys=True) + '\n')
        sys.stdout.flush()
        return cl_main.EXIT_OK
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    if page is not None:
        if page.truncated:
            print('nova-consolelog: older bytes are gone; this page starts '
                  'at %d' % page.start, file=sys.stderr)
        print('next offset: %d' % page.next, file=sys.stderr)
    return cl_main.EXIT_OK
