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

"""The pull engine: copy another host's console-log chain into ours.

The destination of a live migration pulls the source's stash (or, from the
command line, a pin of its live chain) into its own chain as imported
history. Anything on nova's bus may be hostile, so only bytes the source
vouched for over RPC are installed, each exactly once:

1. open the transfer (RPC 1.3, ``open_console_log_transfer``): the source
   hands the stash to this host and answers its files with a hash list
   each (a sha256 per MiB, computed when the stash was made) and a release
   token for this host. A live chain is pinned first (hard links, sizes
   fixed), so virtlogd rolling over during the pull can never splice two
   files. A source of 1.0 to 1.2 is described with whole-file checksums
   instead, and its live files cannot be pulled;
2. ``begin_import`` with an import id derived from the source host and the
   stash id: it owns the staging file (an flock), resumes a pull that
   stopped, or finds the import in place already (the ledger) — then only
   the release is left;
3. fetch the bytes. When both sides speak RPC 1.2 or later over RabbitMQ,
   over the bulk channel (rpc.bulk): one call per window, two in flight,
   the bytes arriving as binary AMQP messages on a queue of our own (on a
   connection the process keeps for its pulls); each
   window carries a random token that every message must repeat with the
   instance, stash, file and offset, or it is dropped and counted.
   Otherwise, and for whatever the bulk channel did not deliver, chunk by
   chunk with ``pull_window`` calls in flight;
4. check every block on disk against the hash list (``Import.verify``);
   blocks that do not match — a damaged or forged message — are fetched
   again with chunk calls, within ``pull_retries`` rounds;
5. install atomically (``Import.commit``, recorded in the ledger), then ask
   the source to release its stash with the token and the roots of the
   installed files; a failed release is only a warning (it is asked again
   by the next retry, and the source expires stashes).

Memory stays bounded: chunks are written (pwrite) as soon as they arrive,
at most ``pull_window`` chunks (or, on the bulk channel, a prefetch of
messages and the sink's backlog) are held at a time, and no file is ever
held whole.

The package tells that story module by module:

- ``puller``: steps 1, 2, 4 and 5 — open, stage, verify, install,
  release; ``pull`` and ``PullResult``;
- ``bulk_path``: step 3 over the bulk channel (windows, tokens, the
  receiving and sink threads);
- ``chunk_path``: step 3 with chunk calls, and every re-read;
- ``job``: what the three share — settings, deadline, counters, retries
  with backoff, and the in-order writer;
- ``gate``: at most ``max_concurrent_imports`` pulls of a process at once,
  the others waiting their turn (visible to ``nova-consolelog status``);
- ``pacing``: the adaptive rate cap (``bulk_rate_limit``) that every
  window and chunk request of the process's pulls waits for.
"""

from nova_consolelog.transfer import puller as _puller

# The API of the package: what nova-compute's migration steps and the
# command line call.
pull = _puller.pull
PullResult = _puller.PullResult
import_id_for = _puller.import_id_for
