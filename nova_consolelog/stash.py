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

**Hash lists.** A stash made after the QEMU stopped (the source of a
non-shared live migration) records, in its manifest, a sha256 per MiB of
every file (see hashlist), computed once when it is made: a destination
checks what it installed against them, and the release compares roots
without reading the files again. Bytes that change in a stash afterwards
(a disk error, a hand) no longer match and are never installed anywhere.

**Pins.** A pull of a live chain (``nova-consolelog pull`` without a
stash) reads a *pin*: hard links to the chain's files as one consistent
snapshot saw them, with their sizes and hash lists at that instant, under
``<stash_path>/.pins/``. virtlogd may roll over or truncate the chain
meanwhile: the linked inodes keep their first ``size`` bytes (virtlogd only
appends, renames and unlinks), so the pull never splices two files. Pins
are deleted by the release or after ``pull_timeout`` twice over.

**Grants.** A stash is handed to one destination: the manifest names it
when the source knows it (``destination``). ``grant`` gives a puller of
that host a random token (only its sha256 is kept, in ``grants.json``);
``release`` wants that token and the roots of every file. Knowing the
checksums is not enough to make a source drop a stash.
"""

import contextlib
import errno
import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import threading
import time
import uuid

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_consolelog import chain as cl_chain
from nova_consolelog import conf as cl_conf
from nova_consolelog import exception
from nova_consolelog import fileutils
from nova_consolelog import hashlist

LOG = logging.getLogger(__name__)

CONF = cl_conf.CONF

MANIFEST = 'manifest.json'
GRANTS = 'grants.json'
MANIFEST_VERSION = 1
STASH_ID_RE = re.compile(r'[A-Za-z0-9_-]{1,64}')
STATE_STASHED = 'stashed'
STATE_INCOMPLETE = 'incomplete'
# A resize's stash: kept after its destination installed it, until the
# resize is confirmed (a revert moves it back; see Stash.settle_install).
HOLD_CONFIRM = 'confirm'
# Under the stash root: pins of live chains (see the module docstring).
PINS_DIR = '.pins'
PIN_PREFIX = 'pin-'
# Grants kept per stash: a destination that crashed and came back asks
# again; older tokens than these are forgotten.
MAX_GRANTS = 16
# Pins at once, per instance and per host (see Stash.pin).
MAX_PINS_PER_INSTANCE = 4
MAX_PINS = 64
_COPY_CHUNK = 1024 * 1024
_PIN_ATTEMPTS = 5


def _check_uuid(instance_uuid):
    if not isinstance(instance_uuid, str) or not (
            uuidutils.is_uuid_like(instance_uuid)):
        raise exception.InvalidInput(
            reason='malformed instance uuid %r' % (instance_uuid,))
    return str(uuid.UUID(instance_uuid))


def _check_stash_id(stash_id):
    if not isinstance(stash_id, str) or not STASH_ID_RE.fullmatch(stash_id):
        raise exception.InvalidInput(
            reason='stash id must match %s, got %.80r' % (
                STASH_ID_RE.pattern, stash_id))
    return stash_id


def pin_root(stash_root):
    """Where pins of live chains live, under the stash root."""
    return os.path.join(stash_root, PINS_DIR)


def is_pin_id(stash_id):
    return isinstance(stash_id, str) and stash_id.startswith(PIN_PREFIX)


def _token_hash(token):
    return hashlib.sha256(token.encode('ascii')).hexdigest()


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


_is_real_dir = fileutils.is_real_dir


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


def _file_entry(chain, f, live):
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


def _check_manifest_files(manifest):
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
               root=None, conf=None, destination=None, hold=None):
        """Move every member of ``chain`` into a new stash.

        ``live_names``: members a running QEMU may still write (recorded in
        the manifest; no checksum is trusted for them, every other file
        gets its hash list). ``destination``: the only host a transfer of
        this stash is granted to (see ``grant``). ``hold``: what the stash
        waits for besides its destination's install (``HOLD_CONFIRM``: a
        resize's confirm; see ``settle_install``). Raises
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
                stashed = cl_chain.ConsoleLogChain(
                    path, log_name=chain.log_name, instance=instance_uuid,
                    conf=conf)
                manifest = {
                    'version': MANIFEST_VERSION,
                    'instance_uuid': instance_uuid,
                    'stash_id': stash_id,
                    'created': time.time(),
                    'source': chain.directory,
                    'log_name': chain.log_name,
                    'base_offset': base_offset,
                    'block_size': hashlist.BLOCK_SIZE,
                    'files': [_file_entry(stashed, f, f.name in live_names)
                              for f in files if f.name in moved],
                    'live_names': list(live_names),
                    'destination': destination,
                    'hold': hold,
                    'state': STATE_STASHED,
                }
                cl_chain.write_atomic(path, MANIFEST, json.dumps(
                    manifest, sort_keys=True, indent=1).encode('utf-8'))
            except (OSError, exception.ConsoleLogError):
                _move_names(moved, path, chain.directory)
                raise
        except exception.ConsoleLogError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise exception.StashFailed(instance=instance_uuid,
                                        reason=str(e)) from e
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
        if not (_is_real_dir(os.path.dirname(path)) and _is_real_dir(path)):
            # A symlink planted as the instance's or the stash's directory
            # is never followed: it is not a stash of ours.
            raise exception.StashNotFound(stash_id=stash_id,
                                          instance=instance_uuid)
        try:
            manifest = fileutils.load_json(os.path.join(path, MANIFEST))
            if not isinstance(manifest, dict) or (
                    manifest.get('stash_id') != stash_id):
                raise ValueError('not this stash\'s manifest')
            float(manifest['created'])
            _check_manifest_files(manifest)
        except FileNotFoundError:
            manifest = None
        except (OSError, ValueError, KeyError, TypeError,
                exception.ConsoleLogError) as e:
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
                if STASH_ID_RE.fullmatch(name) and _is_real_dir(
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

    # -- transfers (RPC 1.3) ---------------------------------------------

    @property
    def destination(self):
        return self.manifest.get('destination')

    # -- held stashes (cold migration and resize) -----------------------

    @property
    def held(self):
        """True for a resize's stash, kept until the resize is confirmed."""
        return self.manifest.get('hold') == HOLD_CONFIRM

    @property
    def installed_by(self):
        """The host that installed a held stash as history, or None."""
        return self.manifest.get('installed_by')

    @property
    def confirmed(self):
        return bool(self.manifest.get('confirmed'))

    def settle_install(self, host):
        """``host`` installed this stash: delete it, or note it if held.

        A resize can still be reverted after its destination installed the
        source's console log: the revert starts the guest on the source
        again, and the destination's copy goes with nova's destroy there.
        So a held stash is only marked installed until the confirm (which
        deletes it then); once confirmed, an install deletes it at once.
        Returns True when the stash was deleted. Call under the hand-over
        lock, exclusively.
        """
        if self.held and not self.confirmed:
            self._rewrite_manifest(installed_by=host)
            return False
        self.release()
        return True

    def settle_confirm(self):
        """The resize is confirmed: delete an installed held stash.

        One not installed yet is marked confirmed and stays for its
        destination's pull (whose release then deletes it), or until
        ``stash_expiry``. Returns True when the stash was deleted. Call
        under the hand-over lock, exclusively.
        """
        if self.installed_by is not None:
            self.release()
            return True
        self._rewrite_manifest(confirmed=True)
        return False

    def transfer_files(self):
        """``[entry]`` of the files as pulled: name, kind, size, blocks.

        Sizes and hash lists are those of the manifest: a pull reads
        exactly those bytes. A stash without them (made by an earlier
        release, or incomplete after a crash) gets them now, once, and
        keeps them. Call under the hand-over lock, exclusively.

        :raises InvalidInput: a file a running QEMU may still write (a
            stash of a shared instance path, which the destination installs
            from the shared storage, never by a pull).
        """
        live = set(self.live_names)
        if live:
            raise exception.InvalidInput(
                reason='stash %s may still be written by a running QEMU '
                       '(%s); it is installed from the shared instance '
                       'path, not pulled' % (self.stash_id,
                                             ', '.join(sorted(live))))
        entries = self.manifest.get('files') or []
        on_disk = {f.name: f for f in self.chain.scan()}
        if (self.manifest.get('block_size') and
                self.manifest.get('state') == STATE_STASHED and
                all('blocks' in e for e in entries) and
                set(on_disk) == {e['name'] for e in entries}):
            return entries
        chain = self.chain
        entries = [_file_entry(chain, f, False) for f in on_disk.values()]
        self._rewrite_manifest(block_size=hashlist.BLOCK_SIZE,
                               files=entries, state=STATE_STASHED)
        return entries

    def _rewrite_manifest(self, **changes):
        manifest = dict(self.manifest)
        manifest.update(changes)
        cl_chain.write_atomic(self.path, MANIFEST, json.dumps(
            manifest, sort_keys=True, indent=1).encode('utf-8'))
        self.manifest = manifest

    def _grants(self):
        try:
            grants = fileutils.load_json(os.path.join(self.path, GRANTS))
        except FileNotFoundError:
            return []
        except (OSError, ValueError, exception.ConsoleLogError) as e:
            LOG.warning('Ignoring unreadable grants of stash %s: %s',
                        self.stash_id, e)
            return []
        if not isinstance(grants, list):
            return []
        return [g for g in grants if isinstance(g, dict) and
                isinstance(g.get('host'), str) and
                hashlist.is_hex_digest(g.get('token_sha256'))]

    def grant(self, host):
        """A release token for a pull of this stash by ``host``.

        Refused (HandoverRefused) when the stash is meant for another
        host. Only the token's sha256 is kept. Call under the hand-over
        lock, exclusively.
        """
        if self.destination is not None and host != self.destination:
            raise exception.HandoverRefused(
                stash_id=self.stash_id, instance=self.instance_uuid,
                reason='it is handed to another host')
        token = secrets.token_hex(16)
        grants = self._grants()[-(MAX_GRANTS - 1):]
        grants.append({'host': host, 'token_sha256': _token_hash(token),
                       'created': time.time()})
        cl_chain.write_atomic(self.path, GRANTS,
                              json.dumps(grants).encode('utf-8'))
        return token

    def check_release(self, host, token, roots):
        """Raise HandoverRefused unless ``host`` may release with these.

        ``token`` must be one granted to ``host``; ``roots`` must name
        every file of the stash with the root of its hash list as recorded
        when the stash was made.
        """
        if not isinstance(token, str) or not isinstance(host, str):
            raise exception.HandoverRefused(
                stash_id=self.stash_id, instance=self.instance_uuid,
                reason='no release token')
        digest = _token_hash(token) if token.isascii() else ''
        if not any(g['host'] == host and
                   hmac.compare_digest(g['token_sha256'], digest)
                   for g in self._grants()):
            raise exception.HandoverRefused(
                stash_id=self.stash_id, instance=self.instance_uuid,
                reason='the release token was not granted to %.64s' % host)
        block_size = self.manifest.get('block_size')
        entries = self.manifest.get('files') or []
        expected = {e['name']: hashlist.root(e['size'], block_size,
                                             e['blocks'])
                    for e in entries if 'blocks' in e}
        if len(expected) != len(entries) or not isinstance(roots, dict) or \
                set(roots) != set(expected):
            raise exception.HandoverRefused(
                stash_id=self.stash_id, instance=self.instance_uuid,
                reason='the release does not name the stash\'s files')
        for name, value in expected.items():
            if not hmac.compare_digest(str(roots[name]), value):
                raise exception.ChecksumMismatch(
                    name=name, offset=0, expected=value,
                    actual=str(roots[name])[:64])

    @classmethod
    def pin(cls, instance_uuid, chain, stash_root, host=None, conf=None):
        """Pin the live chain for one pull; see the module docstring.

        Call under the hand-over lock (shared is enough: nothing moves).
        """
        conf = conf if conf is not None else CONF
        instance_uuid = _check_uuid(instance_uuid)
        root = pin_root(stash_root)
        # Nothing is created for an instance this host does not have.
        chain.scan()
        # A pin keeps files virtlogd may have dropped: bounded per instance
        # and per host, whoever asks.
        held = cls.list(root=root, conf=conf)
        if len(held) >= MAX_PINS or len(
                [p for p in held if p.instance_uuid == instance_uuid]) >= \
                MAX_PINS_PER_INSTANCE:
            raise exception.HandoverRefused(
                stash_id='(pin)', instance=instance_uuid,
                reason='%d pulls of live chains are in progress here; try '
                       'again when they are released or expire' % len(held))
        for _attempt in range(_PIN_ATTEMPTS):
            stash_id = PIN_PREFIX + new_stash_id()
            parent = os.path.join(root, instance_uuid)
            path = os.path.join(parent, stash_id)
            os.makedirs(parent, mode=0o700, exist_ok=True)
            if not _is_real_dir(root) or not _is_real_dir(parent):
                raise exception.UnsafeChainFile(path=parent,
                                                reason='not a directory')
            os.mkdir(path, 0o700)
            try:
                manifest = cls._pin_into(chain, path, instance_uuid,
                                         stash_id, host)
            except FileNotFoundError:
                # A file went (virtlogd truncated or rolled over) between
                # the snapshot and its link: take another snapshot.
                shutil.rmtree(path, ignore_errors=True)
                continue
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                try:
                    os.rmdir(parent)
                except OSError:
                    pass  # other pins of the instance
                raise
            return cls(root, instance_uuid, stash_id, manifest, conf=conf)
        raise exception.StashFailed(instance=instance_uuid,
                                    reason='the chain kept changing')

    @staticmethod
    def _pin_into(chain, path, instance_uuid, stash_id, host):
        files = []
        with chain.snapshot() as snap:
            for m in snap.members:
                target = os.path.join(path, m.file.name)
                os.link(chain.path(m.file.name), target,
                        follow_symlinks=False)
                st = os.fstat(m.fd)
                if (os.lstat(target).st_ino, os.lstat(target).st_dev) != (
                        st.st_ino, st.st_dev):
                    # virtlogd rolled over since the snapshot: that name
                    # is another file now.
                    raise FileNotFoundError(target)
                files.append({
                    'name': m.file.name, 'kind': m.file.kind,
                    'size': m.size, 'mtime': m.file.mtime,
                    'blocks': hashlist.fd_blocks(m.fd, m.size)})
        manifest = {
            'version': MANIFEST_VERSION, 'instance_uuid': instance_uuid,
            'stash_id': stash_id, 'created': time.time(),
            'source': chain.directory, 'log_name': chain.log_name,
            'base_offset': chain.base_offset(),
            'block_size': hashlist.BLOCK_SIZE, 'files': files,
            'live_names': [], 'destination': host, 'state': STATE_STASHED,
        }
        cl_chain.write_atomic(path, MANIFEST, json.dumps(
            manifest, sort_keys=True, indent=1).encode('utf-8'))
        return manifest

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
    def install_as_history(self, chain, release=True):
        """Copy the stash into ``chain`` as one history file, then release.

        For a shared instance path: the destination installs the chain it
        moved aside, by local copy, bounded by ``history_max_bytes``, checked
        on disk against the stash's hash lists and exactly once (a retry
        after a crash between the install and the release only releases).
        Call it once no QEMU writes into the stash any more: bytes written
        after the copy started are not in the history. With ``release``
        False the stash stays (a resize's, until its confirm: see
        ``settle_install``). Returns the history name.
        """
        source = self.chain
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
        imp = chain.begin_import('stash-%s' % self.stash_id[:58], files,
                                 digests, base_offset=source.base_offset())
        if imp.installed:
            if release:
                self.release()
            return imp.installed
        try:
            for name, _size in files:
                start, end = imp.wanted(name)
                while start < end:
                    data, _eof = source.read_chunk(
                        name, start, min(_COPY_CHUNK, end - start))
                    if not data:
                        raise exception.InstallFailed(
                            instance=self.instance_uuid,
                            reason='%s shrank while copied' % name)
                    imp.write(name, start, data)
                    start += len(data)
                imp.checkpoint(name, end)
            bad = imp.verify()
            if bad:
                raise exception.InstallFailed(
                    instance=self.instance_uuid,
                    reason='the copy of %s does not match the stash' % (
                        ', '.join(sorted({b[0] for b in bad}))))
            name = imp.commit()
        except exception.ConsoleLogError:
            imp.close()
            raise
        if release:
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
        if is_pin_id(stash.stash_id):
            # Hard links to a live chain: nothing of the chain is lost.
            LOG.info('Removed console-log pin %s of instance %s: its pull '
                     'did not release it within %ss', stash.stash_id,
                     stash.instance_uuid, max_age)
        else:
            LOG.warning('Deleted console-log stash %s of instance %s: %d '
                        'byte(s) of console output never collected by a '
                        'destination within %ss', stash.stash_id,
                        stash.instance_uuid, size, max_age)
        expired.append((stash.instance_uuid, stash.stash_id, size))
    return expired
