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

"""Giving a stash back to a chain: moved back, or copied in as history.

``restore`` is the rollback of a failed migration on the host that made
the stash: the files move back under their names (rename, so a QEMU still
writing keeps writing into them). ``install_as_history`` is the end of a
hand-over through shared storage or on one host: the stash is copied into
the chain as one verified ``console.history.<seq>`` by a history import,
exactly once, and only then released.
"""

import os

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist
from nova_consolelog.stash import moves

LOG = logging.getLogger(__name__)

_COPY_CHUNK = 1024 * 1024


@moves.typed_io
def restore(stash, directory):
    """Roll back: move the files of ``stash`` back into ``directory``.

    If a file name is taken there now (a new ``console.log`` was started),
    the stashed chain is installed as history instead, so nothing is
    overwritten and nothing is lost. The stash is released afterwards.
    Returns the names now in ``directory``'s chain that came from the
    stash.
    """
    target = cl_chain.ConsoleLogChain(directory, log_name=stash.log_name,
                                      instance=stash.instance_uuid,
                                      conf=stash.conf)
    if not fileutils.is_real_dir(directory):
        raise exception.InstanceDirNotFound(path=directory)
    names = [f.name for f in stash.chain.scan()]
    taken = [n for n in names
             if os.path.lexists(os.path.join(directory, n))]
    if taken:
        LOG.info('Console-log files %s of instance %s exist again; '
                 'restoring stash %s as history', ', '.join(taken),
                 stash.instance_uuid, stash.stash_id)
        return [install_as_history(stash, target)]
    if os.path.lexists(os.path.join(stash.path, cl_chain.BASE_OFFSET_NAME)):
        names.append(cl_chain.BASE_OFFSET_NAME)
    try:
        moved = moves.move_names(names, stash.path, directory)
    except OSError as e:
        raise exception.StashFailed(instance=stash.instance_uuid,
                                    reason=str(e))
    try:
        cl_chain.fsync_dir(directory)
    except OSError as e:
        # Everything is back under its name; only durability is in
        # doubt, and moving the files away again would not help.
        LOG.warning('Could not fsync %s after restoring the console '
                    'log of instance %s: %s', directory,
                    stash.instance_uuid, e)
    restored = [n for n in moved if n != cl_chain.BASE_OFFSET_NAME]
    LOG.info('Restored %d console-log file(s) of instance %s from '
             'stash %s', len(restored), stash.instance_uuid, stash.stash_id)
    stash.release()
    return restored


@moves.typed_io
def install_as_history(stash, chain, release=True):
    """Copy ``stash`` into ``chain`` as one history file, then release.

    For a shared instance path: the destination installs the chain it
    moved aside, by local copy, bounded by ``history_max_bytes``, checked
    on disk against the stash's hash lists and exactly once (a retry after
    a crash between the install and the release only releases). Call it
    once no QEMU writes into the stash any more: bytes written after the
    copy started are not in the history. With ``release`` False the stash
    stays (a resize's, until its confirm: see ``Stash.settle_install``).
    Returns the history name.
    """
    source = stash.chain
    files = []
    digests = {}
    for f in source.scan():
        fd = source.open_member(f.name)
        try:
            size = os.fstat(fd).st_size
            digests[f.name] = (hashlist.BLOCK_SIZE,
                               hashlist.fd_blocks(fd, size))
        finally:
            os.close(fd)
        files.append((f.name, size))
    imp = chain.begin_import('stash-%s' % stash.stash_id[:58], files,
                             digests, base_offset=source.base_offset())
    if imp.installed:
        if release:
            stash.release()
        return imp.installed
    try:
        for name, _size in files:
            start, end = imp.wanted(name)
            while start < end:
                data, _eof = source.read_chunk(
                    name, start, min(_COPY_CHUNK, end - start))
                if not data:
                    raise exception.InstallFailed(
                        instance=stash.instance_uuid,
                        reason='%s shrank while copied' % name)
                imp.write(name, start, data)
                start += len(data)
            imp.checkpoint(name, end)
        bad = imp.verify()
        if bad:
            raise exception.InstallFailed(
                instance=stash.instance_uuid,
                reason='the copy of %s does not match the stash' % (
                    ', '.join(sorted({b[0] for b in bad}))))
        name = imp.commit()
    except exception.ConsoleLogError:
        imp.close()
        raise
    if release:
        stash.release()
    return name
