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
it stopped. The instance directory is created when missing, but only
once every argument has been checked: bad input (exit 2) changes nothing
on disk, and neither does a source with nothing to pull (exit 3). A stash
is released on the peer after a verified install unless ``--keep``.
"""

import hashlib
import logging
import os
import sys
import time

import oslo_messaging

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import names
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


def client(conf, transport_url):
    """The RPC client; a bad transport URL is bad input (exit 2).

    Building the client loads the driver and parses the URL but does not
    connect: this fails fast, before anything is created on disk.
    """
    # stevedore logs a warning for an unknown driver before raising: the
    # error below says it in one line.
    loader_log = logging.getLogger('stevedore')
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        return cl_api.ConsoleLogAPI(conf, transport_url=transport_url)
    except (oslo_messaging.InvalidTransportURL,
            oslo_messaging.DriverLoadFailure, ValueError) as e:
        raise exception.InvalidInput(
            reason='unusable transport URL: %s' % (
                exception.bounded(str(e).splitlines()[0] if str(e) else
                                  type(e).__name__, 200),))
    finally:
        loader_log.setLevel(level)


def _checked(args, conf):
    """The instance's chain, once every argument is known to be good."""
    instance = names.check_instance_uuid(args.instance)
    if args.stash is not None:
        names.check_stash_id(args.stash)
    names.check_host_name(args.source)
    cl_main.instances_path(conf)
    chain = cl_chain.ConsoleLogChain.for_instance(instance, conf=conf)
    if os.path.lexists(chain.directory) and not fileutils.is_real_dir(
            chain.directory):
        raise exception.InvalidInput(
            reason='%s is not a directory (a file or a symbolic link); '
                   'refusing to use it' % chain.directory)
    return instance, chain


def _nothing_pulled(result):
    """Whether the source held no byte to install."""
    if result.sha256s is None:
        return result.files == 0
    empty = hashlib.sha256(b'').hexdigest()
    return all(v == empty for v in result.sha256s.values())


def pull(args, conf):
    instance, chain = _checked(args, conf)
    rpcapi = client(conf, args.transport_url)
    created = False
    try:
        try:
            os.mkdir(chain.directory)
            created = True
        except FileExistsError:
            pass
        code = _pull(args, conf, rpcapi, instance, chain)
    except exception.StashNotFound as e:
        print('nova-consolelog: %s' % e, file=sys.stderr)
        code = cl_main.EXIT_NOTHING
    except BaseException:
        code = None
        raise
    finally:
        rpcapi.transport.cleanup()
        if created and code != cl_main.EXIT_OK:
            # Made by this run and still empty: leave no trace. A failed
            # pull's partial import stays (a retry resumes it).
            try:
                os.rmdir(chain.directory)
            except OSError:
                pass
    return code


def _pull(args, conf, rpcapi, instance, chain):
    progress = Progress(sys.stderr)
    try:
        result = transfer.pull(conf, rpcapi, args.source, instance,
                               stash_id=args.stash, chain=chain,
                               progress=progress, release=not args.keep)
    finally:
        progress.finish()
    if _nothing_pulled(result):
        print('nothing to pull: the console log of instance %s on %s is '
              'empty%s' % (instance, args.source,
                           '; stash released' if result.released else ''),
              file=sys.stderr)
        return cl_main.EXIT_NOTHING
    print('pulled %d file(s), %d bytes in %.2f s (%.1f MB/s, %d bytes on '
          'the wire)%s' % (result.files, result.bytes, result.seconds,
                           result.rate / 1e6, result.wire_bytes,
                           '; stash released' if result.released else ''))
    return cl_main.EXIT_OK
