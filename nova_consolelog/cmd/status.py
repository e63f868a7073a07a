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

"""``nova-consolelog status``: the console-log state this host holds.

An operator asks this when a console log looks incomplete after a live
migration, or when disk is used under the stash directory. The answer, per
instance:

* stashes: chains moved aside by a migration on this host and not yet
  released by a destination (age, files, bytes);
* the hand-over records, while a migration is unfinished (which host keeps
  it, role, peer, state);
* partial imports: history being pulled, with the verified bytes so far
  (a retry resumes them);
* imports waiting for one of the ``max_concurrent_imports`` slots of
  their process, or running (``transfer.gate``);
* the chain in the instance directory: imported history and virtlogd's
  files, with their sizes.

Everything is read-only, and nothing on disk is trusted: state files
(manifests, hand-over records, import progress) are read with
``fileutils`` (no symlink followed, a FIFO or device never opened for
reading, at most ``fileutils.MAX_STATE_BYTES``), and an instance or stash
directory that is a symlink is never followed. Exit codes: 0 when
everything could be read; 1 when some state could not be read (the problem
is part of the output: an unreadable, oversize or odd file, a symlinked
directory); 2 for bad input (a malformed uuid, an instances path that does
not exist, ``--instance`` naming a symlinked directory); 3 with
``--instance`` when this host holds nothing for that instance.

This module gathers the instance side (chains, partial imports) and runs
the command; ``status_stashes`` gathers the stash side (stashes, pins,
hand-over records), ``status_text`` prints the result for humans.
"""

import json
import os
import time

from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog.cmd import status_stashes
from nova_consolelog.cmd import status_text
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'status',
        help='show the console-log stashes, hand-overs, partial imports '
             'and history held on this host',
        description='Show, per instance, the console-log state this host '
                    'holds: stashes waiting for a destination to collect '
                    'them (age, files, bytes), unfinished hand-overs, '
                    'partial imports with their verified bytes, and the '
                    'imported history and virtlogd files in the instance '
                    'directory. Read-only. Reads [consolelog] instances_path '
                    'and stash_path from --config-file (for example '
                    '/etc/nova/nova.conf). Exit status: 0 all read, 1 some '
                    'state unreadable (shown), 2 bad input, 3 nothing held '
                    'for --instance.')
    parser.add_argument(
        '--instance', metavar='UUID',
        help='only this instance')
    parser.add_argument(
        '--format', choices=('text', 'json'), default='text',
        help='output format (default: text)')
    parser.set_defaults(func=run)
    return parser


def _new_entry():
    return {'chain': [], 'history_files': 0, 'history_bytes': 0,
            'log_files': 0, 'log_bytes': 0, 'stashes': [],
            'handovers': [], 'partial_imports': [], 'errors': []}


def _instance_dirs(instances_path, only, entry):
    """Instance directories to look into; symlinked ones never followed."""
    if only is not None:
        path = os.path.join(instances_path, only)
        fileutils.refuse_link(path)
        return [only] if fileutils.is_real_dir(path) else []
    found = []
    for name in sorted(os.listdir(instances_path)):
        if not uuidutils.is_uuid_like(name):
            continue
        path = os.path.join(instances_path, name)
        if fileutils.is_real_dir(path):
            found.append(name)
        elif os.path.islink(path) and os.path.isdir(path):
            entry(name)['errors'].append(
                'instance directory %s is a symbolic link: not followed'
                % path)
    return found


def _chain_state(entry, chain):
    for f in chain.scan():
        entry['chain'].append({'name': f.name, 'kind': f.kind,
                               'size': f.size, 'mtime': f.mtime})
        if f.kind == cl_fields.FileKind.HISTORY:
            entry['history_files'] += 1
            entry['history_bytes'] += f.size
        else:
            entry['log_files'] += 1
            entry['log_bytes'] += f.size


def _partial_imports(entry, directory, now):
    """Unfinished imports: staging files and their progress records.

    Only listed and stat'ed here (never opened for writing); the progress
    record is the JSON sidecar the chain module keeps next to the staging
    file.
    """
    for name in sorted(os.listdir(directory)):
        if not name.startswith(cl_chain.PARTIAL_PREFIX) or name.endswith(
                cl_chain.SIDECAR_SUFFIX):
            continue
        st = os.lstat(os.path.join(directory, name))
        item = {'import_id': name[len(cl_chain.PARTIAL_PREFIX):],
                'staged_bytes': st.st_size, 'age': now - st.st_mtime,
                'total_bytes': None, 'verified_bytes': 0,
                'held': fileutils.flock_held(os.path.join(directory, name))}
        try:
            progress = fileutils.load_json(
                os.path.join(directory, name + cl_chain.SIDECAR_SUFFIX))
            item['total_bytes'] = sum(size for _n, size in progress['files'])
            # Written and fsynced so far ('verified' before RPC 1.3).
            item['verified_bytes'] = sum(progress.get(
                'durable', progress.get('verified', {})).values())
        except FileNotFoundError:
            pass
        except (exception.ConsoleLogError, OSError, ValueError, KeyError,
                TypeError, AttributeError) as e:
            entry['errors'].append('progress of import %s unreadable: %s'
                                   % (item['import_id'], e))
        entry['partial_imports'].append(item)


def collect(conf, instance_uuid=None, now=None):
    """The console-log state of this host, as plain data.

    ``{'instances_path', 'stash_path', 'instances': {uuid: entry}}``, where
    an entry has ``chain``, ``history_*``, ``log_*``, ``stashes``,
    ``handovers``, ``partial_imports`` and ``errors``.
    """
    now = time.time() if now is None else now
    if instance_uuid is not None:
        try:
            instance_uuid = names.check_instance_uuid(instance_uuid)
        except exception.InvalidInput:
            raise exception.InvalidInput(
                reason='--instance must be an instance uuid, not %s' % (
                    names.echo(instance_uuid),)) from None
    instances_path = cl_main.instances_path(conf)
    stash_root = cl_conf.stash_path(conf)
    instances = {}

    def entry(uuid):
        return instances.setdefault(uuid, _new_entry())

    for uuid in _instance_dirs(instances_path, instance_uuid, entry):
        e = entry(uuid)
        chain = cl_chain.ConsoleLogChain(os.path.join(instances_path, uuid),
                                         conf=conf)
        try:
            _chain_state(e, chain)
            _partial_imports(e, chain.directory, now)
        except (exception.ConsoleLogError, OSError) as err:
            e['errors'].append(str(err))
    try:
        stashes = status_stashes.stashes(stash_root, instance_uuid, conf,
                                         entry)
    except exception.InvalidInput:
        raise
    except (exception.ConsoleLogError, OSError) as err:
        stashes = []
        entry(instance_uuid or '-')['errors'].append(
            'stashes under %s unreadable: %s' % (stash_root, err))
    for stash in stashes:
        e = entry(stash.instance_uuid)
        try:
            e['stashes'].append(status_stashes.stash_state(
                stash, conf.consolelog.stash_expiry))
        except (exception.ConsoleLogError, OSError) as err:
            e['errors'].append('stash %s unreadable: %s' % (stash.stash_id,
                                                            err))
    for host, record in status_stashes.handover_records(stash_root):
        if instance_uuid is not None and record.instance_uuid != (
                instance_uuid):
            continue
        try:
            data = fileutils.load_json(record.path)
            if not isinstance(data, dict):
                raise ValueError('not a JSON object')
        except FileNotFoundError:
            continue  # removed meanwhile
        except (exception.ConsoleLogError, OSError, ValueError) as err:
            entry(record.instance_uuid)['errors'].append(
                'hand-over record %s unreadable: %s' % (record.path, err))
            continue
        if data:
            data = dict(data, age=now - data.get('created', now),
                        recorded_by=host)
            data['why'] = status_stashes.why(data,
                                             conf.consolelog.stash_expiry)
            entry(record.instance_uuid)['handovers'].append(data)
    for host, ticket in status_stashes.import_tickets(stash_root):
        if 'error' in ticket:
            entry(instance_uuid or '-')['errors'].append(ticket['error'])
            continue
        inst = ticket.get('instance_uuid')
        if not isinstance(inst, str) or (instance_uuid is not None and
                                         inst != instance_uuid):
            continue
        since = ticket.get('since')
        entry(inst).setdefault('imports', []).append({
            'state': ticket.get('state'), 'source': ticket.get('source'),
            'recorded_by': host, 'pid': ticket.get('pid'),
            'age': now - since if isinstance(since, (int, float)) else 0})
    pins_of = status_stashes.pins(stash_root, instance_uuid, now)
    for inst, pins in pins_of.items():
        entry(inst)['pins'] = pins
    return {'instances_path': instances_path, 'stash_path': stash_root,
            'instances': instances}


def run(args, conf):
    state = collect(conf, args.instance)
    if args.format == 'json':
        print(json.dumps(state, indent=2, sort_keys=True))
    else:
        print('\n'.join(status_text.format_text(state)))
    if any(e['errors'] for e in state['instances'].values()):
        return cl_main.EXIT_FAILED
    if args.instance is not None and not state['instances']:
        return cl_main.EXIT_NOTHING
    return cl_main.EXIT_OK
