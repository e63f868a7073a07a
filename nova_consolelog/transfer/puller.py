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

"""The core of a pull: open, stage, verify, install, release.

``pull`` (below) runs one pull of a source's chain into ours; the bytes
come over the bulk path (``bulk_path``) and the chunk path
(``chunk_path``), which share the pull's settings, counters, retries and
in-order writer (``job``). What this module decides: which set of files
to pull and what it must hash to (the source's hash lists, or whole-file
checksums from a source before 1.3), which staged import to resume
(``history_import``), when the bytes on disk are right, and when the
source may release its stash.
"""

import collections
import concurrent.futures
import hashlib
import socket
import time

from oslo_log import log as logging

from nova_consolelog import chain as cl_chain
from nova_consolelog import exception
from nova_consolelog import hashlist
from nova_consolelog import import_ledger
from nova_consolelog import names
from nova_consolelog.transfer import bulk_path as cl_bulk_path
from nova_consolelog.transfer import chunk_path as cl_chunk_path
from nova_consolelog.transfer import job as cl_job

LOG = logging.getLogger(__name__)

# Seconds a pull waits for another pull of the same stash on this host.
IMPORT_WAIT = 60

PullResult = collections.namedtuple(
    'PullResult', ['bytes', 'files', 'seconds', 'rate', 'wire_bytes',
                   'stash_id', 'released', 'bulk_bytes', 'sha256s',
                   'transfer_token', 'rejected', 'installed'],
    defaults=(0, None, None, 0, None))
PullResult.__doc__ = """Outcome of a pull.

``bytes``: bytes fetched by this run (a resumed pull counts only the rest);
``files``: files of the source set; ``seconds``; ``rate`` in bytes/s;
``wire_bytes``: chunk payload as sent (after compression, before base64);
``stash_id``: the source stash; ``released``: whether the source released
it; ``bulk_bytes``: bytes of ``bytes`` that came over the bulk channel;
``sha256s``: ``{name: root}`` of every source file as installed (the root
of its hash list; the whole-file sha256 from a source before 1.3), what a
later ``release`` of the stash takes, with ``transfer_token``;
``rejected``: bulk messages dropped (not bound to our request, malformed);
``installed``: the history file name (None when nothing was installed).
"""


def import_id_for(source_host, stash_id):
    """Stable import id for one source chain: a retry resumes its import."""
    key = '%s\0%s' % (source_host, stash_id or '')
    return 'pull-' + hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]


class Puller:
    """One pull's core; see ``pull``."""

    def __init__(self, job, chain):
        self.job = job
        self.chain = chain
        self.chunks = cl_chunk_path.ChunkPath(job)
        self.bulk = cl_bulk_path.BulkPath(job, self.chunks)

    def _open(self):
        """The source set with a hash list per file, and a release token.

        RPC 1.3 hands us the stash (or a pin of the live chain). A source
        of 1.0 to 1.2 is described with whole-file checksums: one block
        per file; a file it is still writing cannot be checked, so it is
        not pulled.
        """
        try:
            remote = self.job.retrying('open', lambda timeout: (
                self.job.rpcapi.open_transfer(
                    self.job.ctxt, self.job.host, self.job.instance_uuid,
                    self.job.local_host, stash_id=self.job.stash_id,
                    timeout=timeout)))
        except exception.PeerUnsupported as e:
            LOG.info('Console-log pull of instance %s: %s; pulling with '
                     'whole-file checksums', self.job.instance_uuid, e)
            return self._open_legacy(), None
        self._check_set(remote)
        token = remote.transfer_token
        if not names.is_token(token):
            raise self.job.failed('the source sent no valid transfer token')
        self.job.stash_id = remote.stash_id
        self.job.v13 = True
        digests = {}
        for f in remote.files:
            if f.size:
                digests[f.name] = (remote.block_size, hashlist.check(
                    f.size, remote.block_size, f.blocks))
        return (remote, digests), token

    def _open_legacy(self):
        job = self.job
        remote = job.retrying('describe', lambda timeout: (
            job.rpcapi.describe(job.ctxt, job.host, job.instance_uuid,
                                stash_id=job.stash_id, checksums=True)))
        self._check_set(remote)
        digests = {}
        for f in remote.files:
            if not f.size:
                continue
            if f.live or not hashlist.is_hex_digest(f.sha256):
                raise exception.PeerUnsupported(
                    host=self.job.host, what='pinning %s, which it still '
                    'writes (upgrade it to RPC 1.3)' % f.name)
            digests[f.name] = (f.size, [f.sha256])
        return remote, digests

    def _check_set(self, remote):
        """The set answers our question: this instance, this stash."""
        job = self.job
        if getattr(remote, 'instance_uuid', None) != job.instance_uuid or (
                job.stash_id is not None and
                remote.stash_id != job.stash_id):
            raise self.job.failed('the source described another chain')

    def run(self, release):
        try:
            (remote, digests), token = self._open()
        except exception.StashNotFound:
            installed = self._installed_before()
            if not installed:
                raise
            # Installed and released by an earlier run (or a concurrent
            # pull): nothing is left to do anywhere.
            LOG.info('Console-log stash %s of instance %s from %s is '
                     'installed here already (%s) and released',
                     self.job.stash_id, self.job.instance_uuid, self.job.host,
                     installed)
            return PullResult(0, 0, 0.0, 0.0, 0, self.job.stash_id, True, 0,
                              {}, None, 0, installed)
        files = list(remote.files)
        if token:
            roots = {f.name: hashlist.root(f.size, remote.block_size,
                                           digests.get(f.name, (0, []))[1])
                     for f in files}
        else:
            roots = {f.name: (digests[f.name][1][0] if f.size else
                              hashlib.sha256(b'').hexdigest())
                     for f in files}
        if not any(f.size for f in files):
            # Nothing to install: an empty history file would only be
            # clutter. The (empty) stash may still be released.
            released = bool(release and self.job.stash_id is not None and
                            self._release(roots, token))
            return PullResult(0, len(files), 0.0, 0.0, 0, self.job.stash_id,
                              released, 0, roots, token)
        imp = self.chain.begin_import(
            import_id_for(self.job.host, self.job.stash_id),
            [(f.name, f.size) for f in files], digests,
            base_offset=remote.base_offset,
            wait=max(0, min(IMPORT_WAIT, self.job.deadline.remaining())))
        if imp.installed:
            released = bool(release and self._release(roots, token))
            return PullResult(0, len(files), 0.0, 0.0, 0, self.job.stash_id,
                              released, 0, roots, token, 0, imp.installed)
        states = [cl_job.FileState(f, *imp.wanted(f.name)) for f in files]
        self.job.total = sum(max(0, st.end - st.start) for st in states)
        try:
            if self.bulk.supported():
                self.bulk.pull(imp, states)
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.job.window,
                    thread_name_prefix='consolelog-pull') as pool:
                for st in states:
                    self.chunks.pull_file(pool, imp, st)
                self._check_on_disk(pool, imp)
        except (exception.TransferFailed, exception.PeerUnsupported):
            # Keep the import: written progress is durable and the next
            # pull with the same source resumes there (checking it all).
            imp.close()
            raise
        except (exception.InvalidInput, exception.ChainFileNotFound,
                exception.StashNotFound) as e:
            imp.abort()
            raise self.job.failed(str(e)) from e
        except BaseException:
            imp.close()
            raise
        try:
            name = imp.commit()
        except BaseException:
            # Whatever happened, the staging file is no longer ours: the
            # next pull takes it over (and the ledger tells it how far the
            # install went).
            imp.close()
            raise
        seconds = time.monotonic() - self.job.started
        released = False
        if release and self.job.stash_id is not None:
            released = self._release(roots, token)
        rate = self.job.fetched / seconds if seconds > 0 else 0.0
        LOG.info('Pulled console log of instance %s from %s as %s: %d '
                 'file(s), %d bytes in %.2fs (%.1f MB/s, %d bytes on the '
                 'wire, %d bulk message(s) rejected)', self.job.instance_uuid,
                 self.job.host, name, len(files), self.job.fetched, seconds,
                 rate / 1e6, self.job.wire, self.job.bulk_rejected)
        job = self.job
        return PullResult(job.fetched, len(files), seconds, rate, job.wire,
                          job.stash_id, released, job.bulk_bytes, roots,
                          token, job.bulk_rejected, name)

    def _installed_before(self):
        """The history name of this stash's import here, if installed."""
        if self.job.stash_id is None:
            return None
        try:
            return import_ledger.Ledger(self.chain).installed(
                import_id_for(self.job.host, self.job.stash_id))
        except exception.ConsoleLogError:
            return None

    def _check_on_disk(self, pool, imp):
        """Check every block on disk; fetch the bad ones again.

        A block fails when a message was damaged or forged (anybody with
        the bus credentials can publish into our bulk queue) or the disk
        did not keep what was written: its bytes are read again with chunk
        calls, ``pull_retries`` rounds at most.
        """
        for attempt in range(self.job.retries + 1):
            bad = imp.verify()
            if bad:
                LOG.warning('Console-log pull of instance %s from %s: %d '
                            'block(s) did not match the source\'s hash list '
                            '(%s); reading them again',
                            self.job.instance_uuid, self.job.host, len(bad),
                            ', '.join(
                                '%s@%d' % (n, lo) for n, lo, _hi in bad[:5]))
            missing = imp.missing()
            if not missing and imp.complete():
                return
            if attempt == self.job.retries:
                break
            self.chunks.refetch(pool, imp, missing)
        raise self.job.failed('bytes still do not match the source\'s hash '
                              'list after %d round(s)' % (
                                  self.job.retries + 1))

    def _release(self, roots, token):
        job = self.job
        try:
            job.rpcapi.release(job.ctxt, job.host, job.instance_uuid,
                               job.stash_id, roots, transfer_token=token,
                               puller_host=job.local_host)
            return True
        except Exception as e:
            LOG.warning('Console log of instance %s is installed, but %s did '
                        'not release its stash %s: %s (asked again by the '
                        'next retry; it expires there)', job.instance_uuid,
                        job.host, job.stash_id, str(e)[:300])
            return False


def pull(conf, rpcapi, source_host, instance_uuid, stash_id=None, chain=None,
         progress=None, ctxt=None, release=True, window=None,
         chunk_size=None, local_host=None):
    """Pull an instance's console-log chain from ``source_host``.

    :param conf: ConfigOpts with our options registered.
    :param rpcapi: an ``rpc.api.ConsoleLogAPI``.
    :param stash_id: the source's stash; None pulls its live chain (from
        the command line; a migration always pulls a stash).
    :param chain: the local ConsoleLogChain to import into; default the
        instance's chain under ``[consolelog] instances_path``.
    :param progress: callable ``progress(done_bytes, total_bytes)``.
    :param release: release the source's stash after a verified install.
    :param window: calls in flight (default ``pull_window``).
    :param chunk_size: bytes per call (default ``chunk_size``).
    :param local_host: this host's name, as the source hands the stash to
        it (default: ``[DEFAULT] host`` when registered, else the
        hostname).
    :returns: PullResult.
    :raises: PeerUnsupported when the source lacks the console-log RPC;
        TransferFailed when the pull cannot finish now (a later pull of the
        same source resumes); InvalidInput for a malformed uuid.
    """
    if chain is None:
        chain = cl_chain.ConsoleLogChain.for_instance(instance_uuid,
                                                      conf=conf)
    if local_host is None:
        try:
            local_host = conf.host
        except Exception:
            local_host = socket.gethostname()
    job = cl_job.PullJob(conf, rpcapi, source_host, instance_uuid, stash_id,
                         progress, ctxt, window, chunk_size,
                         local_host=local_host)
    return Puller(job, chain).run(release)
