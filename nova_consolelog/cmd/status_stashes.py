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

"""``nova-consolelog status``, the stash side: stashes, pins, hand-overs.

What the source side of hand-overs leaves under the stash directory:
stashes (with their state and whether they expired), pins of live chains
handed to a puller, and the hand-over records of unfinished migrations
with what each waits for (``why``). Read with the same distrust as the
rest of ``status``: manifests and records through ``fileutils``, no
symlinked directory followed.
"""

import os

from nova_consolelog.cmd import status_text
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import migration as cl_migration
from nova_consolelog import names
from nova_consolelog import stash as cl_stash


def why(record, expiry):
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
                        record.get('peer'), status_text.age(left)))
        return 'the migration is running'
    if state == 'stashed':
        return 'waiting for %s to collect and release the stash' % (
            record.get('peer'),)
    return 'the migration is running'


def pins(stash_root, instance_uuid, now):
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


def handover_records(stash_root):
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


def stashes(stash_root, instance_uuid, conf, entry):
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
                fileutils.refuse_link(parent)
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


def stash_state(stash, expiry):
    files = stash.chain.scan()
    age = stash.age()
    return {'stash_id': stash.stash_id, 'age': age,
            'state': stash.state, 'expired': age >= expiry,
            'destination': stash.manifest.get('destination'),
            'hash_lists': bool(stash.manifest.get('block_size')),
            'files': len(files), 'bytes': sum(f.size for f in files),
            'names': [f.name for f in files],
            'live_names': list(stash.live_names or ())}
