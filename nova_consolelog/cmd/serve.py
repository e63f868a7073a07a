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

"""``nova-consolelog serve``: run the console-log RPC endpoint standalone.

For a host whose nova-compute does not embed the endpoint (or for tests and
the demo): answers peers' describe/read/release calls for the chains under
``[consolelog] instances_path`` and the stashes under ``stash_path`` until
SIGINT or SIGTERM. Prints one line ``serving HOST on TOPIC`` to stdout
once the endpoint listens. Refuses (exit 2) a host name that is not one
(an AMQP wildcard such as ``*`` would answer calls meant for other hosts),
an instances path that does not exist and an unusable transport URL.
"""

import signal
import socket
import sys
import threading

from nova_consolelog.cmd import main as cl_main
from nova_consolelog.cmd import pull as cl_pull
from nova_consolelog import names
from nova_consolelog.rpc import server as cl_server


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'serve', help='run the console-log RPC endpoint until stopped',
        description='Serve this host\'s console logs and stashes to peers '
                    'over RPC until SIGINT or SIGTERM.')
    parser.add_argument('--host', default=None,
                        help='host name peers use to reach this endpoint '
                             '(default: this machine\'s host name)')
    parser.add_argument('--transport-url', default=None, metavar='URL',
                        help='oslo.messaging transport URL (default: '
                             '[DEFAULT] transport_url of the config)')
    parser.set_defaults(func=serve)
    return parser


def serve(args, conf, stop_event=None):
    host = names.check_host_name(
        socket.gethostname() if args.host is None else args.host)
    cl_main.instances_path(conf)
    # The same checks of the transport URL as pull's, before listening.
    cl_pull.client(conf, args.transport_url).transport.cleanup()
    server = cl_server.ConsoleLogServer(conf, host,
                                        transport_url=args.transport_url)
    stop = stop_event or threading.Event()
    if stop_event is None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    server.start()
    print('serving %s on %s' % (host, conf.consolelog.topic), flush=True)
    try:
        while not stop.wait(1):
            pass
    finally:
        server.stop()
    print('stopped', file=sys.stderr, flush=True)
    return 0
