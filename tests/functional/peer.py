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

"""Console-log endpoints of other releases, for the version-skew tests.

``python -m tests.functional.peer MODE --config-file F
--host H --transport-url URL`` serves like ``nova-consolelog serve``, with
the endpoint of MODE: ``old`` speaks only RPC 1.0 (a release before
compression); ``v1.1`` speaks 1.1 (a release before the bulk channel);
``no-chunks`` claims 1.1 but has no chunk read (a broken or
foreign peer).
"""

import argparse
import signal
import sys
import threading

from nova_consolelog.rpc import server as cl_server

from tests import fixtures as test_fixtures

MODES = {'old': test_fixtures.OldManager, 'v1.1': test_fixtures.Manager11,
         'no-chunks': test_fixtures.NoChunksManager}


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('mode', choices=sorted(MODES))
    parser.add_argument('--config-file', required=True)
    parser.add_argument('--host', required=True)
    parser.add_argument('--transport-url', required=True)
    args = parser.parse_args(argv)
    conf = test_fixtures.new_conf(args.config_file)
    server = cl_server.ConsoleLogServer(
        conf, args.host, transport_url=args.transport_url,
        endpoint=MODES[args.mode](conf, args.host))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print('serving %s on %s' % (args.host, conf.consolelog.topic),
          flush=True)
    while not stop.wait(1):
        pass
    server.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
