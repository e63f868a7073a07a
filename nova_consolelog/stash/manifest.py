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

"""What a stash says about itself: its ids and its manifest.

``manifest.json`` is written last and atomically when a stash is made;
it names the instance, the stash, where the chain came from, its files
with their sizes and (unless a QEMU may still write them) their hash lists,
the host the stash is handed to and what it waits for. A manifest that is
missing or damaged is replaced, on load, by one that says ``incomplete``:
the files are still there and are never forgotten.
"""

import json
import os
import re
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist

LOG = logging.getLogger(__name__)

MANIFEST = 'manifest.json'
MANIFEST_VERSION = 1
STASH_ID_RE = re.compile(r'[A-Za-z0-9_-]{1,64}')
STATE_STASHED = 'stashed'
STATE_INCOMPLETE = 'incomplete'
# A resize's stash: kept after its destination installed it, until the
# resize is confirmed (a revert moves it back; see Stash.settle_install).
HOLD_CONFIRM = 'confirm'


def check_uuid(instance_uuid):
    """The canonical form of ``instance_uuid``; InvalidInput if malformed."""
    if not isinstance(instance_uuid, str) or not (
            uuidutils.is_uuid_like(instance_uuid)):
        raise exception.InvalidInput(
            reason='malformed instance uuid %r' % (instance_uuid,))
    return str(uuid.UUID(instance_uuid))


def check_stash_id(stash_id):
    """``stash_id`` if it is one (a name, never a path); else InvalidInput."""
    if not isinstance(stash_id, str) or not STASH_ID_RE.fullmatch(stash_id):
        raise exception.InvalidInput(
            reason='stash id must match %s, got %.80r' % (
                STASH_ID_RE.pattern, stash_id))
    return stash_id


def new_stash_id():
    """A fresh, sortable stash id: UTC time and a random part."""
    return '%s-%s' % (time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()),
                      uuid.uuid4().hex[:8])


def file_entry(chain, f, live):
    """Manifest entry of chain file ``f``; a hash list unless ``live``."""
    entry = {'name': f.name, 'kind': f.kind, 'size': f.size,
             'mtime': f.mtime}
    if live:
        return entry
    fd = chain.open_member(f.name)
    try:
        size = os.fstat(fd).st_size
        entry['size'] = size
        entry['blocks'] = hashlist.fd_blocks(fd, size)
    finally:
        os.close(fd)
    return entry


def check_files(manifest):
    """Refuse a manifest whose file list we could not act on safely."""
    files = manifest.get('files', [])
    if not isinstance(files, list):
        raise ValueError('files is not a list')
    block_size = manifest.get('block_size')
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(
                entry.get('name'), str) or isinstance(
                entry.get('size'), bool) or not isinstance(
                entry.get('size'), int) or entry['size'] < 0:
            raise ValueError('malformed file entry')
        if 'blocks' in entry:
            hashlist.check(entry['size'], block_size, entry['blocks'])


def write(path, manifest):
    """Replace the manifest of the stash directory ``path`` atomically."""
    cl_chain.write_atomic(path, MANIFEST, json.dumps(
        manifest, sort_keys=True, indent=1).encode('utf-8'))


def read(path, instance_uuid, stash_id):
    """The manifest of the stash in ``path``; ``incomplete`` if unusable.

    A stash made by a process that crashed before the manifest, or whose
    manifest is damaged, still holds console output: it is described by
    what the directory holds, never dropped.
    """
    try:
        manifest = fileutils.load_json(os.path.join(path, MANIFEST))
        if not isinstance(manifest, dict) or (
                manifest.get('stash_id') != stash_id):
            raise ValueError('not this stash\'s manifest')
        float(manifest['created'])
        check_files(manifest)
        return manifest
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError,
            exception.ConsoleLogError) as e:
        LOG.warning('Stash %s of instance %s has a damaged manifest '
                    '(%s); using its files', stash_id, instance_uuid, e)
    return {'version': MANIFEST_VERSION,
            'instance_uuid': instance_uuid,
            'stash_id': stash_id,
            'created': os.lstat(path).st_mtime,
            'live_names': [], 'files': [],
            'state': STATE_INCOMPLETE}
