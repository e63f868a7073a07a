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

"""Who may release a stash: the grant of a release token, and its check.

A stash is handed to one destination (the manifest's ``destination``, when
the source knows it). ``grant`` gives a puller of that host a random token
and keeps only its sha256, in ``grants.json`` beside the manifest;
``check_release`` wants that token and the root of every file's hash list.
Knowing the checksums is not enough to make a source drop a stash.
"""

import hashlib
import hmac
import json
import os
import secrets
import time

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist

LOG = logging.getLogger(__name__)

GRANTS = 'grants.json'
# Grants kept per stash: a destination that crashed and came back asks
# again; older tokens than these are forgotten.
MAX_GRANTS = 16


def _token_hash(token):
    return hashlib.sha256(token.encode('ascii')).hexdigest()


def _load(stash):
    try:
        grants = fileutils.load_json(os.path.join(stash.path, GRANTS))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, exception.ConsoleLogError) as e:
        LOG.warning('Ignoring unreadable grants of stash %s: %s',
                    stash.stash_id, e)
        return []
    if not isinstance(grants, list):
        return []
    return [g for g in grants if isinstance(g, dict) and
            isinstance(g.get('host'), str) and
            hashlist.is_hex_digest(g.get('token_sha256'))]


def grant(stash, host):
    """A release token for a pull of ``stash`` by ``host``.

    Refused (HandoverRefused) when the stash is meant for another host.
    Only the token's sha256 is kept. Call under the hand-over lock,
    exclusively.
    """
    if stash.destination is not None and host != stash.destination:
        raise exception.HandoverRefused(
            stash_id=stash.stash_id, instance=stash.instance_uuid,
            reason='it is handed to another host')
    token = secrets.token_hex(16)
    grants = _load(stash)[-(MAX_GRANTS - 1):]
    grants.append({'host': host, 'token_sha256': _token_hash(token),
                   'created': time.time()})
    cl_chain.write_atomic(stash.path, GRANTS,
                          json.dumps(grants).encode('utf-8'))
    return token


def check_release(stash, host, token, roots):
    """Raise HandoverRefused unless ``host`` may release with these.

    ``token`` must be one granted to ``host``; ``roots`` must name every
    file of the stash with the root of its hash list as recorded when the
    stash was made.
    """
    if not isinstance(token, str) or not isinstance(host, str):
        raise exception.HandoverRefused(
            stash_id=stash.stash_id, instance=stash.instance_uuid,
            reason='no release token')
    digest = _token_hash(token) if token.isascii() else ''
    if not any(g['host'] == host and
               hmac.compare_digest(g['token_sha256'], digest)
               for g in _load(stash)):
        raise exception.HandoverRefused(
            stash_id=stash.stash_id, instance=stash.instance_uuid,
            reason='the release token was not granted to %.64s' % host)
    block_size = stash.manifest.get('block_size')
    entries = stash.manifest.get('files') or []
    expected = {e['name']: hashlist.root(e['size'], block_size, e['blocks'])
                for e in entries if 'blocks' in e}
    if len(expected) != len(entries) or not isinstance(roots, dict) or \
            set(roots) != set(expected):
        raise exception.HandoverRefused(
            stash_id=stash.stash_id, instance=stash.instance_uuid,
            reason='the release does not name the stash\'s files')
    for name, value in expected.items():
        if not hmac.compare_digest(str(roots[name]), value):
            raise exception.ChecksumMismatch(
                name=name, offset=0, expected=value,
                actual=str(roots[name])[:64])
