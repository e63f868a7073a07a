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

"""``nova-consolelog pull``: copy an instance's console log from a peer.

Pulls the peer's stash (``--stash``) or its live chain into this host's
chain of the instance as imported history — the same engine as a live
migration, resumable: run it again after a failure and it continues where
it stopped. The instance directory is created when missing. A stash is
released on the peer after a verified install unless ``--keep``.
"""

import os
import sys
import time

from nova_consolelog import chain as cl_chain
from nova_consolelog.rpc import api as cl_api
from nova_consolelog import transfer

BAR_WIDTH = 30


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'pull', help='pull an instance\'s console log from another host',
        description='Pull an instance\'s console log (a stash, or the live '
                    'chain) from another host into this host\'s chain as '
                    'imported history.')
    parser.add_argument('--from', dest='source', required=True,
                        metavar='HOST', help='host to pull from')
    parser.add_argument('--instance', required=True, metavar='UUID',
                        help='instance uuid')
    parser.add_argument('--stash', default=None, metavar='ID',
                        help='the peer\'s stash id (default: its live chain)')
    parser.add_argument('--keep', action='store_true',
                        help='do not release the peer\'s stash afterwards')
    parser.add_argument('--transport-url', default=None, metavar='URL',
                        help='oslo.messaging transport URL (default: '
                             '[DEFAULT] transport_url of the config)')
    parser.set_defaults(func=pull)
    return parser


class Progress:
    """A bar on a terminal, a line per 10 % otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.shown = -1

    def __call__(self, done, total):
        percent = 100 if total <= 0 else done * 100 // total
        seconds = time.monotonic() - self.started
        rate = done / seconds / 1e6 if seconds > 0 else 0.0
        if self.tty:
            filled = BAR_WIDTH * percent // 100
            self.stream.write('\r[%s%s] %3d%% %d/%d bytes %.1f MB/s' % (
                '#' * filled, ' ' * (BAR_WIDTH - filled), percent, done,
                total, rate))
            self.stream.flush()
        elif percent // 10 > self.shown:
            self.shown = percent // 10
            print('pulled %d/%d bytes (%d%%, %.1f MB/s)' % (
                done, total, percent, rate), file=self.stream, flush=True)

    def finish(self):
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()


def pull(args, conf):
    chain = cl_chain.ConsoleLogChain.for_instance(args.instance, conf=conf)
    os.makedirs(chain.directory, exist_ok=True)
    rpcapi = cl_api.ConsoleLogAPI(conf, transport_url=args.transport_url)
    progress = Progress(sys.stderr)
    try:
        result = transfer.pull(conf, rpcapi, args.source, args.instance,
                               stash_id=args.stash, chain=chain,
                               progress=progress, release=not args.keep)
    finally:
        progress.finish()
        rpcapi.transport.cleanup()
    print('pulled %d file(s), %d bytes in %.2f s (%.1f MB/s, %d bytes on '
          'the wire)%s' % (result.files, result.bytes, result.seconds,
                           result.rate / 1e6, result.wire_bytes,
                           '; stash released' if result.released else ''))
    return 0
