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
"""

import fcntl
import json
import os
import time

from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog.cmd import main as cl_main
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import migration as cl_migration
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog import stash as cl_stash


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


def _refuse_link(path):
    if os.path.islink(path):
        raise exception.InvalidInput(
            reason='%s is a symbolic link; refusing to follow it' % path)


def _instance_dirs(instances_path, only, entry):
    """Instance directories to look into; symlinked ones never followed."""
    if only is not None:
        path = os.path.join(instances_path, only)
        _refuse_link(path)
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
                'held': _held(os.path.join(directory, name))}
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


def _held(path):
    """Whether a pull holds this staging file now (its flock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock at once
    return False


def _why(record, expiry):
    """What an unfinished hand-over waits for, in words."""
    state = record.get('state')
    if record.get('role') == 'destination':
        if state == 'installed':
            return ('history installed here; the release of the source\'s '
                    'stash is owed and asked again by every periodic run')
        if state == 'pulling':
            left = max(0, expiry - record.get('age', 0))
            return ('the import from %s is owed: retried by every periodic '
                    'run for %s more, then given up' % (
                        record.get('peer'), _age(left)))
        return 'the migration is running'
    if state == 'stashed':
        return 'waiting for %s to collect and release the stash' % (
            record.get('peer'),)
    return 'the migration is running'


def _pins(stash_root, instance_uuid, now):
    """Pins of live chains for pulls by hand: {uuid: [pin]}."""
    root = cl_stash.pin_root(stash_root)
    found = {}
    try:
        uuids = [instance_uuid] if instance_uuid else os.listdir(root)
    except FileNotFoundError:
        return found
    for inst in uuids:
        parent = os.path.join(root, inst)
        if not fileutils.is_real_dir(parent):
            continue
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if fileutils.is_real_dir(path):
                found.setdefault(inst, []).append(
                    {'stash_id': name,
                     'age': now - os.lstat(path).st_mtime})
    return found


def _handover_records(stash_root):
    """``(host, HandoverRecord)`` of every host keeping records here.

    The migration steps keep one directory of records per host under
    ``<stash root>/.handover/`` (on a shared instance path both hosts share
    the stash root); only ``<uuid>.json`` files there are records (the
    hand-over lock is an flock on the instances directory, not a file).
    """
    top = os.path.join(stash_root, cl_migration.RECORDS_DIR)
    try:
        hosts = sorted(os.listdir(top))
    except FileNotFoundError:
        return []
    found = []
    for host in hosts:
        directory = os.path.join(top, host)
        if os.path.isdir(directory) and not os.path.islink(directory):
            found.extend((host, r) for r in
                         cl_migration.HandoverRecord.all(directory))
    return found


def _stashes(stash_root, instance_uuid, conf, entry):
    """The stashes under ``stash_root``, oldest first; problems noted.

    Why not ``Stash.list``: it opens every manifest with a plain open(),
    which blocks for ever on a FIFO and reads a file of any size whole.
    Each manifest is read here with ``fileutils`` first; a stash whose
    manifest is a FIFO, a symlink, a device or oversize, or whose
    directory is a symlink, is reported as unreadable instead.
    """
    if instance_uuid is not None:
        uuids = [instance_uuid]
    else:
        try:
            uuids = sorted(n for n in os.listdir(stash_root)
                           if _canonical_uuid(n))
        except FileNotFoundError:
            return []
    found = []
    for inst in uuids:
        parent = os.path.join(stash_root, inst)
        if os.path.islink(parent):
            if instance_uuid is not None:
                _refuse_link(parent)
            entry(inst)['errors'].append(
                'stash directory %s is a symbolic link: not followed' %
                parent)
            continue
        if not fileutils.is_real_dir(parent):
            continue
        for stash_id in sorted(os.listdir(parent)):
            if not names.STASH_ID_RE.fullmatch(stash_id):
                continue
            path = os.path.join(parent, stash_id)
            if os.path.islink(path):
                entry(inst)['errors'].append(
                    'stash %s is a symbolic link: not followed' % stash_id)
                continue
            if not fileutils.is_real_dir(path):
                continue
            try:
                manifest = fileutils.load_json(os.path.join(
                    path, cl_stash.MANIFEST))
            except (FileNotFoundError, ValueError):
                manifest = None  # Stash.load reads what the files say
            except (exception.ConsoleLogError, OSError) as err:
                entry(inst)['errors'].append(
                    'stash %s unreadable: manifest: %s' % (stash_id, err))
                continue
            try:
                if _usable(manifest, stash_id):
                    stash = cl_stash.Stash(stash_root, inst, stash_id,
                                           manifest, conf=conf)
                else:
                    stash = cl_stash.Stash.load(inst, stash_id,
                                                root=stash_root, conf=conf)
            except exception.StashNotFound:
                continue  # released meanwhile
            except (exception.ConsoleLogError, OSError) as err:
                entry(inst)['errors'].append('stash %s unreadable: %s' % (
                    stash_id, err))
                continue
            found.append(stash)
    return sorted(found, key=lambda s: (s.created, s.stash_id))


def _canonical_uuid(name):
    try:
        return names.check_instance_uuid(name) == name
    except exception.InvalidInput:
        return False


def _usable(manifest, stash_id):
    """Whether ``manifest`` is a stash manifest status can show as is."""
    if not isinstance(manifest, dict) or manifest.get(
            'stash_id') != stash_id:
        return False
    try:
        float(manifest['created'])
        str(manifest['state'])
        list(manifest.get('live_names', ()))
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _stash_state(stash, expiry):
    files = stash.chain.scan()
    age = stash.age()
    return {'stash_id': stash.stash_id, 'age': age,
            'state': stash.state, 'expired': age >= expiry,
            'destination': stash.manifest.get('destination'),
            'hash_lists': bool(stash.manifest.get('block_size')),
            'files': len(files), 'bytes': sum(f.size for f in files),
            'names': [f.name for f in files],
            'live_names': list(stash.live_names or ())}


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
        stashes = _stashes(stash_root, instance_uuid, conf, entry)
    except exception.InvalidInput:
        raise
    except (exception.ConsoleLogError, OSError) as err:
        stashes = []
        entry(instance_uuid or '-')['errors'].append(
            'stashes under %s unreadable: %s' % (stash_root, err))
    for stash in stashes:
        e = entry(stash.instance_uuid)
        try:
            e['stashes'].append(_stash_state(
                stash, conf.consolelog.stash_expiry))
        except (exception.ConsoleLogError, OSError) as err:
            e['errors'].append('stash %s unreadable: %s' % (stash.stash_id,
                                                            err))
    for host, record in _handover_records(stash_root):
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
            data['why'] = _why(data, conf.consolelog.stash_expiry)
            entry(record.instance_uuid)['handovers'].append(data)
    for inst, pins in _pins(stash_root, instance_uuid, now).items():
        entry(inst)['pins'] = pins
    return {'instances_path': instances_path, 'stash_path': stash_root,
            'instances': instances}


def format_size(n):
    """``n`` bytes for humans: 512 B, 2.0 MiB."""
    if n < 1024:
        return '%d B' % n
    for unit in ('KiB', 'MiB', 'GiB'):
        n /= 1024.0
        if n < 1024 or unit == 'GiB':
            return '%.1f %s' % (n, unit)


def _age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return '%ds' % seconds
    if seconds < 7200:
        return '%dm' % (seconds // 60)
    if seconds < 172800:
        return '%dh' % (seconds // 3600)
    return '%dd' % (seconds // 86400)


def format_text(state):
    """The state as text lines, one block per instance."""
    out = ['instances path: %s' % state['instances_path'],
           'stash path:     %s' % state['stash_path']]
    if not state['instances']:
        out.append('no console-log state on this host')
    for uuid in sorted(state['instances']):
        e = state['instances'][uuid]
        out.append('')
        out.append('instance %s' % uuid)
        if e['chain']:
            out.append('  history: %d file(s), %s; virtlogd files: %d, %s' % (
                e['history_files'], format_size(e['history_bytes']),
                e['log_files'], format_size(e['log_bytes'])))
            for f in e['chain']:
                out.append('    %-24s %-8s %s' % (f['name'], f['kind'],
                                                  format_size(f['size'])))
        for h in e['handovers']:
            out.append('  hand-over recorded by %s: %s, peer %s, state %s, '
                       '%s old' % (h['recorded_by'], h.get('role'),
                                   h.get('peer'), h.get('state'),
                                   _age(h['age'])))
            out.append('    why: %s' % h['why'])
        for s in e['stashes']:
            out.append('  stash %s: %d file(s), %s, %s old, %s%s%s' % (
                s['stash_id'], s['files'], format_size(s['bytes']),
                _age(s['age']), s['state'],
                ', for %s' % s['destination'] if s.get('destination')
                else '',
                ' (expired: deleted by the next periodic run)'
                if s['expired'] else ''))
        for p in e.get('pins', ()):
            out.append('  pin %s (a pull by hand), %s old: released by the '
                       'pull, or removed after twice pull_timeout' % (
                           p['stash_id'], _age(p['age'])))
        for p in e['partial_imports']:
            total = ('of %s' % format_size(p['total_bytes'])
                     if p['total_bytes'] is not None else '')
            out.append('  partial import %s: %s written %s, %s old, %s' % (
                p['import_id'], format_size(p['verified_bytes']), total,
                _age(p['age']),
                'a pull is running' if p.get('held') else
                'resumed by the next pull of that source; removed when '
                'untouched for stash_expiry'))
        for err in e['errors']:
            out.append('  ERROR: %s' % err)
    return out


def run(args, conf):
    state = collect(conf, args.instance)
    if args.format == 'json':
        print(json.dumps(state, indent=2, sort_keys=True))
    else:
        print('\n'.join(format_text(state)))
    if any(e['errors'] for e in state['instances'].values()):
        return cl_main.EXIT_FAILED
    if args.instance is not None and not state['instances']:
        return cl_main.EXIT_NOTHING
    return cl_main.EXIT_OK
