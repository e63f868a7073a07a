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

"""A console-log chain moved aside: the source side of a migration.

Why: on the source, nova's ``_post_live_migration`` runs ``driver.cleanup()``
— which deletes the instance directory, ``console.log`` included, when the
instance path is not shared — *before* it tells the destination. And on a
shared instance path the destination's incoming QEMU start makes virtlogd
unlink ``console.log`` and every ``console.log.N``. So the chain is moved
into a stash outside the instance directory first, and deleted only after
the destination has verified its copy (or after ``stash_expiry``).

Layout: ``<stash_path>/<instance_uuid>/<stash_id>/`` holds the files under
their original names (so a ``ConsoleLogChain`` over the stash directory
reads, describes and serves chunks exactly as in an instance directory),
the chain's ``console.history.base`` and ``manifest.json``.

Files are moved by ``os.rename``: never copied, so the stash must be on the
same filesystem as the instance directories (``EXDEV`` is refused with a
clear error). A QEMU still writing through virtlogd keeps writing into the
moved inode. The manifest is written last, atomically; a stash directory
without one (a crash while stashing) is still loaded and listed, with state
``incomplete``, so its bytes are never forgotten. An empty chain gives a
stash without files: the caller always gets a stash id to hand over.
"""

import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception

LOG = logging.getLogger(__name__)

CONF = cl_conf.CONF

MANIFEST = 'manifest.json'
MANIFEST_VERSION = 1
STASH_ID_RE = re.compile(r'^[A-Za-z0-9_-]{1,64}$')
STATE_STASHED = 'stashed'
STATE_INCOMPLETE = 'incomplete'
_COPY_CHUNK = 1024 * 1024


def _check_uuid(instance_uuid):
    if not isinstance(instance_uuid, str) or not (
            uuidutils.is_uuid_like(instance_uuid)):
        raise exception.InvalidInput(
            reason='malformed instance uuid %r' % (instance_uuid,))
    return str(uuid.UUID(instance_uuid))


def _check_stash_id(stash_id):
    if not isinstance(stash_id, str) or not STASH_ID_RE.match(stash_id):
        raise exception.InvalidInput(
            reason='stash id must match %s, got %r' % (STASH_ID_RE.pattern,
                                                       stash_id))
    return stash_id


_held_locks = threading.local()


@contextlib.contextmanager
def handover_lock(instances_path, shared=False):
    """Serialise hand-over state changes with console reads on this host.

    Moving a chain into a stash, installing a stash as history, restoring
    one, committing an import and releasing a stash change which files hold
    an instance's console output; a read in the middle would miss or repeat
    bytes. State changes hold the lock exclusively; reads (console reads,
    the RPC endpoint's describe and list) hold it shared. It is an flock on
    the instances directory itself, which always exists on a compute host,
    so taking it creates nothing; on a shared instance path both hosts lock
    the same directory. State changes are renames or a bounded copy, so one
    lock for the host is short-held. Re-entrant within a thread (a state
    change may read). Never make an RPC call holding it.
    """
    held = getattr(_held_locks, 'paths', None)
    if held is None:
        held = _held_locks.paths = set()
    path = os.path.realpath(instances_path)
    if path in held:
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise exception.InstanceDirNotFound(path=instances_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
    finally:
        os.close(fd)


def new_stash_id():
    """A fresh, sortable stash id: UTC time and a random part."""
    return '%s-%s' % (time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()),
                      uuid.uuid4().hex[:8])


def _typed_io(method):
    """Turn a stray OSError into StashFailed: callers get typed errors."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as e:
            owner = args[0]
            instance = getattr(owner, 'instance_uuid', None) or (
                args[1] if len(args) > 1 else kwargs.get('instance_uuid'))
            raise exception.StashFailed(instance=instance, reason=str(e))
    return wrapper


def _is_real_dir(path):
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _move_names(names, src_dir, dst_dir):
    """Rename ``names`` from ``src_dir`` to ``dst_dir``; all or nothing.

    Returns the names moved (a name that vanished meanwhile is skipped).
    On an error the names already moved are moved back and the error is
    raised.
    """
    moved = []
    try:
        for name in names:
            try:
                os.rename(os.path.join(src_dir, name),
                          os.path.join(dst_dir, name))
            except FileNotFoundError:
                continue
            moved.append(name)
    except OSError:
        for name in reversed(moved):
            try:
                os.rename(os.path.join(dst_dir, name),
                          os.path.join(src_dir, name))
            except OSError as undo:
                LOG.error('Could not move %s back from %s to %s: %s',
                          name, dst_dir, src_dir, undo)
        raise
    return moved


class Stash:
    """One stash of one instance's console-log chain."""

    def __init__(self, root, instance_uuid, stash_id, manifest, conf=None):
        self.conf = conf if conf is not None else CONF
        self.root = root
        self.instance_uuid = instance_uuid
        self.stash_id = stash_id
        self.manifest = manifest

    def __repr__(self):
        return 'Stash(%s, %s)' % (self.instance_uuid, self.stash_id)

    # -- properties ------------------------------------------------------

    @property
    def path(self):
        return os.path.join(self.root, self.instance_uuid, self.stash_id)

    @property
    def created(self):
        return self.manifest['created']

    @property
    def state(self):
        return self.manifest['state']

    @property
    def live_names(self):
        """Names a running QEMU may still have been writing when stashed."""
        return tuple(self.manifest.get('live_names', ()))

    @property
    def log_name(self):
        return self.manifest.get('log_name') or self.conf.consolelog.log_name

    @property
    def chain(self):
        """A ConsoleLogChain over the stash directory."""
        return cl_chain.ConsoleLogChain(self.path, log_name=self.log_name,
                                        instance=self.instance_uuid,
                                        conf=self.conf)

    def age(self, now=None):
        """Seconds since the stash was made."""
        return (time.time() if now is None else now) - self.created

    def total_size(self):
        """Bytes held now (files may have grown since the manifest)."""
        try:
            return sum(f.size for f in self.chain.scan())
        except exception.ConsoleLogError:
            return sum(f['size'] for f in self.manifest.get('files', ()))

    # -- making, finding -------------------------------------------------

    @classmethod
    def create(cls, instance_uuid, chain, stash_id=None, live_names=(),
               root=None, conf=None):
        """Move every member of ``chain`` into a new stash.

        ``live_names``: members a running QEMU may still write (recorded in
        the manifest; no checksum is trusted for them). Raises
        InstanceDirNotFound, InvalidInput (bad ids, a stash on another
        filesystem, an existing stash id) or StashFailed (anything else; the
        moved files are moved back first).
        """
        conf = conf if conf is not None else CONF
        instance_uuid = _check_uuid(instance_uuid)
        stash_id = _check_stash_id(
            new_stash_id() if stash_id is None else stash_id)
        live_names = tuple(live_names)
        if not all(isinstance(n, str) for n in live_names):
            raise exception.InvalidInput(reason='live_names must be names')
        root = root or cl_conf.stash_path(conf)
        files = chain.scan()
        base_offset = chain.base_offset()
        parent = os.path.join(root, instance_uuid)
        path = os.path.join(parent, stash_id)
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise exception.InvalidInput(
                reason='stash %s of instance %s exists already' % (
                    stash_id, instance_uuid))
        except OSError as e:
            raise exception.StashFailed(instance=instance_uuid,
                                        reason='cannot create %s: %s' % (
                                            path, e))
        try:
            if os.stat(path).st_dev != os.stat(chain.directory).st_dev:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
            names = [f.name for f in files]
            if os.path.lexists(os.path.join(chain.directory,
                                            cl_chain.BASE_OFFSET_NAME)):
                names.append(cl_chain.BASE_OFFSET_NAME)
            moved = _move_names(names, chain.directory, path)
            try:
                cl_chain.fsync_dir(path)
                cl_chain.fsync_dir(chain.directory)
                manifest = {
                    'version': MANIFEST_VERSION,
                    'instance_uuid': instance_uuid,
                    'stash_id': stash_id,
                    'created': time.time(),
                    'source': chain.directory,
                    'log_name': chain.log_name,
                    'base_offset': base_offset,
                    'files': [{'name': f.name, 'kind': f.kind,
                               'size': f.size} for f in files
                              if f.name in moved],
                    'live_names': list(live_names),
                    'state': STATE_STASHED,
                }
                cl_chain.write_atomic(path, MANIFEST, json.dumps(
                    manifest, sort_keys=True, indent=1).encode('utf-8'))
            except OSError:
                _move_names(moved, path, chain.directory)
                raise
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            if e.errno == errno.EXDEV:
                raise exception.InvalidInput(
                    reason='the stash directory %s is not on the same '
                           'filesystem as %s: console logs are moved, never '
                           'copied; set [consolelog] stash_path on the '
                           'instances filesystem' % (root, chain.directory))
            raise exception.StashFailed(instance=instance_uuid,
                                        reason=str(e))
        LOG.info('Moved %d console-log file(s) of instance %s to stash %s',
                 len(manifest['files']), instance_uuid, stash_id)
        return cls(root, instance_uuid, stash_id, manifest, conf=conf)

    @classmethod
    @_typed_io
    def load(cls, instance_uuid, stash_id, root=None, conf=None):
        """The stash ``stash_id`` of an instance; StashNotFound if none."""
        conf = conf if conf is not None else CONF
        instance_uuid = _check_uuid(instance_uuid)
        _check_stash_id(stash_id)
        root = root or cl_conf.stash_path(conf)
        path = os.path.join(root, instance_uuid, stash_id)
        if not _is_real_dir(path):
            raise exception.StashNotFound(stash_id=stash_id,
                                          instance=instance_uuid)
        try:
            with open(os.path.join(path, MANIFEST), 'rb') as f:
                manifest = json.loads(f.read().decode('utf-8'))
            if not isinstance(manifest, dict) or (
                    manifest.get('stash_id') != stash_id):
                raise ValueError('not this stash\'s manifest')
            float(manifest['created'])
        except FileNotFoundError:
            manifest = None
        except (OSError, ValueError, KeyError, TypeError) as e:
            LOG.warning('Stash %s of instance %s has a damaged manifest '
                        '(%s); using its files', stash_id, instance_uuid, e)
            manifest = None
        if manifest is None:
            manifest = {'version': MANIFEST_VERSION,
                        'instance_uuid': instance_uuid,
                        'stash_id': stash_id,
                        'created': os.lstat(path).st_mtime,
                        'live_names': [], 'files': [],
                        'state': STATE_INCOMPLETE}
        return cls(root, instance_uuid, stash_id, manifest, conf=conf)

    @classmethod
    @_typed_io
    def list(cls, instance_uuid=None, root=None, conf=None):
        """Stashes of one instance (or of all), oldest first."""
        conf = conf if conf is not None else CONF
        root = root or cl_conf.stash_path(conf)
        if instance_uuid is not None:
            uuids = [_check_uuid(instance_uuid)]
        else:
            try:
                uuids = [n for n in os.listdir(root)
                         if uuidutils.is_uuid_like(n) and
                         n == str(uuid.UUID(n))]
            except FileNotFoundError:
                return []
        found = []
        for inst in uuids:
            parent = os.path.join(root, inst)
            if not _is_real_dir(parent):
                continue
            for name in os.listdir(parent):
                if STASH_ID_RE.match(name) and _is_real_dir(
                        os.path.join(parent, name)):
                    try:
                        found.append(cls.load(inst, name, root=root,
                                              conf=conf))
                    except exception.StashNotFound:
                        continue  # released meanwhile
        return sorted(found, key=lambda s: (s.created, s.stash_id))

    # -- giving it back --------------------------------------------------

    def base_offset(self):
        return self.chain.base_offset()

    @_typed_io
    def restore(self, directory):
        """Roll back: move the files back into ``directory``.

        If a file name is taken there now (a new ``console.log`` was
        started), the stashed chain is installed as history instead, so
        nothing is overwritten and nothing is lost. The stash is released
        afterwards. Returns the names now in ``directory``'s chain that
        came from the stash.
        """
        target = cl_chain.ConsoleLogChain(directory, log_name=self.log_name,
                                          instance=self.instance_uuid,
                                          conf=self.conf)
        if not _is_real_dir(directory):
            raise exception.InstanceDirNotFound(path=directory)
        names = [f.name for f in self.chain.scan()]
        taken = [n for n in names
                 if os.path.lexists(os.path.join(directory, n))]
        if taken:
            LOG.info('Console-log files %s of instance %s exist again; '
                     'restoring stash %s as history', ', '.join(taken),
                     self.instance_uuid, self.stash_id)
            return [self.install_as_history(target)]
        if os.path.lexists(os.path.join(self.path,
                                        cl_chain.BASE_OFFSET_NAME)):
            names.append(cl_chain.BASE_OFFSET_NAME)
        try:
            moved = _move_names(names, self.path, directory)
        except OSError as e:
            raise exception.StashFailed(instance=self.instance_uuid,
                                        reason=str(e))
        try:
            cl_chain.fsync_dir(directory)
        except OSError as e:
            # Everything is back under its name; only durability is in
            # doubt, and moving the files away again would not help.
            LOG.warning('Could not fsync %s after restoring the console '
                        'log of instance %s: %s', directory,
                        self.instance_uuid, e)
        restored = [n for n in moved if n != cl_chain.BASE_OFFSET_NAME]
        LOG.info('Restored %d console-log file(s) of instance %s from '
                 'stash %s', len(restored), self.instance_uuid,
                 self.stash_id)
        self.release()
        return restored

    @_typed_io
    def install_as_history(self, chain):
        """Copy the stash into ``chain`` as one history file, then release.

        For a shared instance path: the destination installs the chain it
        moved aside, by local copy, bounded by ``history_max_bytes``. Call
        it once no QEMU writes into the stash any more: bytes written after
        the copy started are not in the history. Returns the history name.
        """
        source = self.chain
        files = source.scan()
        imp = chain.begin_import('stash-%s' % self.stash_id[:58],
                                 [(f.name, f.size) for f in files],
                                 base_offset=source.base_offset())
        try:
            for f in files:
                start, end = imp.wanted(f.name)
                while start < end:
                    data, _eof = source.read_chunk(
                        f.name, start, min(_COPY_CHUNK, end - start))
                    if not data:
                        raise exception.InstallFailed(
                            instance=self.instance_uuid,
                            reason='%s shrank while copied' % f.name)
                    imp.write(f.name, start, data)
                    start += len(data)
                imp.verified(f.name, end)
            name = imp.commit()
        except exception.ConsoleLogError:
            imp.close()
            raise
        self.release()
        return name

    @_typed_io
    def release(self):
        """Delete the stash and its files."""
        shutil.rmtree(self.path)
        try:
            os.rmdir(os.path.dirname(self.path))
        except OSError:
            pass  # other stashes of the instance remain


def expire(max_age, root=None, conf=None, now=None):
    """Delete stashes older than ``max_age`` seconds, with a warning each.

    Returns ``[(instance_uuid, stash_id, bytes)]`` of the stashes deleted.
    """
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) \
            or max_age < 0:
        raise exception.InvalidInput(
            reason='max_age must be a non-negative number, not %r' % (
                max_age,))
    expired = []
    for stash in Stash.list(root=root, conf=conf):
        if stash.age(now) <= max_age:
            continue
        size = stash.total_size()
        try:
            stash.release()
        except exception.StashFailed as e:
            LOG.warning('Could not delete expired console-log stash %s of '
                        'instance %s: %s', stash.stash_id,
                        stash.instance_uuid, e)
            continue
        LOG.warning('Deleted console-log stash %s of instance %s: %d '
                    'byte(s) of console output never collected by a '
                    'destination within %ss', stash.stash_id,
                    stash.instance_uuid, size, max_age)
        expired.append((stash.instance_uuid, stash.stash_id, size))
    return expired
