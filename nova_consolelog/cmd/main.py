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

"""The ``nova-consolelog`` command.

Each subcommand lives in its own module under ``nova_consolelog.cmd`` and
provides ``add_parser(subparsers)``, which registers its parser and sets
``func`` (taking the parsed arguments and the ConfigOpts, returning an exit
code).

Exit codes: 0 success, 1 the operation failed, 2 bad input (usage or a value
the command cannot use), 3 nothing to do (for example no such stash).
"""

import argparse
import importlib
import os
import sys
import warnings

from oslo_config import cfg
from oslo_log import log as logging

from nova_consolelog import conf as cl_conf
from nova_consolelog import exception

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3

SUBCOMMANDS = ('show', 'status', 'pull', 'serve', 'demo')


def instances_path(conf):
    """``[consolelog] instances_path``; InvalidInput unless it exists.

    The command line never creates it: a missing path is a wrong
    configuration, not an empty host.
    """
    path = conf.consolelog.instances_path
    if not os.path.isdir(path):
        raise exception.InvalidInput(
            reason='the instances path %s does not exist (set [consolelog] '
                   'instances_path, or pass nova.conf with --config-file)'
            % path)
    return path


def build_parser():
    # The subcommands import oslo.messaging, which imports oslo.service,
    # which imports eventlet, which warns on import that it is deprecated;
    # no command here uses eventlet.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    parser = argparse.ArgumentParser(
        prog='nova-consolelog',
        description='Keep and inspect guest console logs across nova live '
                    'migration.')
    parser.add_argument(
        '--config-file', action='append', default=[], metavar='PATH',
        help='oslo.config file to read (may be repeated), for example '
             '/etc/nova/nova.conf.')
    parser.add_argument('--debug', action='store_true',
                        help='log debug messages')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module('nova_consolelog.cmd.' + name)
        except ImportError:
            continue
        module.add_parser(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    conf = cfg.ConfigOpts()
    cl_conf.register_opts(conf)
    logging.register_options(conf)
    try:
        conf([], project='nova', default_config_files=args.config_file)
    except cfg.Error as e:
        print('nova-consolelog: error: %s' % e, file=sys.stderr)
        return EXIT_USAGE
    if args.debug:
        conf.set_override('debug', True)
    logging.setup(conf, 'nova-consolelog')
    try:
        return args.func(args, conf)
    except exception.InvalidInput as e:
        print('nova-consolelog: error: %s' % e, file=sys.stderr)
        return EXIT_USAGE
    except exception.ConsoleLogError as e:
        print('nova-consolelog: %s' % e, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
