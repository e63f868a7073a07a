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

"""Configuration options of nova-consolelog.

All options live in the ``[consolelog]`` group so that they can sit in
``nova.conf`` next to nova's own; the RPC version cap follows nova's
convention and lives in ``[upgrade_levels]``.  ``list_opts()`` is the
``oslo.config.opts`` entry point used by ``oslo-config-generator``.
"""

from oslo_config import cfg

GROUP = 'consolelog'


def _group():
    """A new OptGroup for ``[consolelog]`` (see ``register_opts``)."""
    return cfg.OptGroup(
        GROUP,
        title='Console log migration options',
        help="""
Options of nova-consolelog, which keeps a guest's serial console log across
live migration with the libvirt driver.
""")


path_opts = [
    cfg.StrOpt(
        'instances_path',
        default='/var/lib/nova/instances',
        help="""
Directory holding the instance directories, each with its ``console.log``
chain. It must equal nova's ``[DEFAULT] instances_path``; inside nova-compute
the nova driver of this project uses nova's value and ignores this one.
"""),
    cfg.StrOpt(
        'stash_path',
        help="""
Directory where a migrating instance's console-log chain is moved aside
before nova's cleanup deletes the instance directory. It must be on the same
filesystem as ``instances_path`` (the chain is moved by rename, never
copied) and outside every instance directory. Default:
``<instances_path>/.consolelog-stash``.
"""),
    cfg.StrOpt(
        'log_name',
        default='console.log',
        help="""
File name of the console log inside an instance directory, as written by
virtlogd for nova's ``<log file=.../console.log append="off"/>``. virtlogd's
rotated backups are ``<log_name>.0`` (newest) to ``<log_name>.N``.
"""),
]

read_opts = [
    cfg.IntOpt(
        'max_console_bytes',
        default=100 * 1024,
        min=1,
        help="""
Largest number of bytes returned by a console read, counted from the end of
the merged log. nova uses 100 KiB (``MAX_CONSOLE_BYTES``); keep it equal so
that the console output of an instance looks the same as with plain nova.
"""),
]

history_opts = [
    cfg.IntOpt(
        'history_max_files',
        default=16,
        min=1,
        help="""
Most imported-history files kept per instance. Each live migration that
brings a console log to this host adds one; when there are more, the oldest
are removed (a warning is logged with the bytes removed).
"""),
    cfg.IntOpt(
        'history_max_bytes',
        default=32 * 1024 * 1024,
        min=0,
        help="""
Most bytes of imported history kept per instance. Older bytes beyond this
limit are dropped when history is imported, and a warning says how many.
virtlogd itself keeps at most ``max_size * (max_backups + 1)`` (8 MiB by
default) of the live log.
"""),
    cfg.IntOpt(
        'stash_expiry',
        default=7 * 24 * 3600,
        min=0,
        help="""
Seconds a stashed console log is kept on the source host when no destination
has collected it. After that the stash is deleted (a warning names the
instance and the bytes deleted) and the leftover libvirt domain may be
undefined by the reaper. This is also the longest shelve offload after which
an unshelve still brings the console history from before the shelve back.
"""),
]

transfer_opts = [
    cfg.BoolOpt(
        'enabled',
        default=True,
        help="""
Migrate the console log during live migration. When disabled, nova's
behaviour is unchanged: the source domain is undefined by libvirt
(``VIR_MIGRATE_UNDEFINE_SOURCE``) and the destination starts a new log.
"""),
    cfg.StrOpt(
        'topic',
        default='nova-consolelog',
        help="""
RPC topic of the console-log endpoint on each compute host.
"""),
    cfg.IntOpt(
        'chunk_size',
        default=1024 * 1024,
        min=4096,
        max=8 * 1024 * 1024,
        help="""
Bytes per RPC chunk when pulling a console log from another host. Chunks
travel base64-encoded; keep them well below the broker's message size limit
(16 MiB by default on RabbitMQ 4).
"""),
    cfg.IntOpt(
        'pull_window',
        default=4,
        min=1,
        max=64,
        help="""
Number of chunk requests kept in flight while pulling. One request at a time
leaves the link idle during every round trip.
"""),
    cfg.BoolOpt(
        'compression',
        default=True,
        help="""
Compress chunks with zlib when the peer supports it (RPC 1.1 and later).
Console output is text and usually shrinks several times.
"""),
    cfg.IntOpt(
        'rpc_timeout',
        default=60,
        min=1,
        help="""
Seconds to wait for one console-log RPC call.
"""),
    cfg.IntOpt(
        'pull_timeout',
        default=600,
        min=1,
        help="""
Total seconds a pull may take, retries included. When it runs out, the
source keeps its stash and the pull is retried later by a periodic task.
"""),
    cfg.BoolOpt(
        'bulk_transfer',
        default=True,
        help="""
Pull console logs over the binary bulk channel (RPC 1.2) when the transport
is ``rabbit://`` and the peer supports it: chunk bytes travel as raw AMQP
messages on the same RabbitMQ instead of base64 inside JSON RPC replies,
which costs several times less CPU. Other transports, and peers of older
releases, are pulled with RPC chunk calls.
"""),
    cfg.IntOpt(
        'bulk_window',
        default=8 * 1024 * 1024,
        min=64 * 1024,
        max=64 * 1024 * 1024,
        help="""
Bytes a puller asks for with one bulk call (RPC 1.2); two windows are kept in
flight, so a puller holds at most about two windows of messages. The source
publishes a window as ``chunk_size`` messages and cuts requests larger than
its own ``bulk_window`` (the puller then asks for the rest).
"""),
    cfg.BoolOpt(
        'bulk_compression',
        default=False,
        help="""
Ask the source to compress bulk-channel chunks with zlib (level 1, only
chunks whose sample shrinks). Off by default: the bulk channel carries raw
bytes, and where CPU rather than the link is the limit compression more than
halves the rate for console text (measured with RabbitMQ on loopback and 2
vCPUs: about 145 against 345 MB/s). Where the link is the limit it pays:
console text travels at about 30 % of its size, and with traffic from the
broker limited to 1 Gbit/s a pull of console text moved about 145 MB/s with
compression against 110 MB/s without. Turn it on when the link between the
compute hosts and the broker is 1 Gbit/s or slower.
"""),
    cfg.IntOpt(
        'max_concurrent_imports',
        default=4,
        min=1,
        max=64,
        help="""
Most console-log pulls one nova-compute (or ``nova-consolelog pull``) runs at
once; more imports wait their turn, first come first served, and show as
``waiting`` in ``nova-consolelog status``. A live migration never waits for
a slot: its import then continues in the background, and console reads take
the older part from the source meanwhile. Each pull holds up to about 5 MiB
of buffers (two bulk windows of messages in flight) and up to
``pull_window`` RPC calls, each of which borrows a connection of the
transport's pool (nova's own, ``[oslo_messaging_rabbit] rpc_conn_pool_size``,
30 by default) while it is sent: keep ``max_concurrent_imports *
pull_window`` well under half of it. Measured on 2 vCPUs with RabbitMQ on
loopback (host-drain bench): a destination receiving 40 imports at once grew
by 95 to 117 MiB without a limit and by 38 MiB with 4; one receiving 10 at
once by 29 to 48 MiB without and 25 to 29 MiB with 4. The drain of 40 took 4.5
to 5.6 s against 3.5 to 3.9 s without (measured on another, quieter day).
"""),
    cfg.IntOpt(
        'bulk_rate_limit',
        default=10 * 1000 * 1000,
        min=0,
        help="""
Most bytes per second all console-log pulls of one process ask their sources
for together (window and chunk requests; the destination asks, so this paces
the sources too). 0: no limit. With a limit the rate adapts to the broker: it
halves while a small AMQP round trip to the broker, timed twice a second on a
connection of its own, takes more than 3 times its idle value (and more than
5 ms), or while RabbitMQ blocks a connection of ours (memory or disk alarm),
never below 1/16 of the limit, and grows back by 1/20 of the limit per second
after 5 seconds without either. The bucket holds one second of the rate, so an
import of up to that size starts at full speed on an idle host.

The default, 10 MB/s, is a trade-off measured with RabbitMQ and 4 destination
processes on 2 vCPUs (a host drain of 40 instances of 8 MiB each): the p99 of
a small RPC call during the drain rose to 2.2 times idle, against 7.7 times
without a limit (and 11 to 15 times before ``max_concurrent_imports``); the
drain took 7.7 s instead of 5.4 s, and one destination importing all 40 took
33 s instead of 4.3 s. A single hand-over of virtlogd's default chain (8 MiB)
fits in the burst. Raise it (or set 0) where the broker has CPU to spare and
hand-over time matters more than nova's RPC latency during drains.
"""),
    cfg.IntOpt(
        'pull_retries',
        default=5,
        min=0,
        help="""
Attempts per chunk after a fault before a pull gives up for now; each retry
resumes at the last verified byte after an exponential backoff.
"""),
]

migration_opts = [
    cfg.IntOpt(
        'shutoff_timeout',
        default=30,
        min=1,
        help="""
Seconds the source waits for its migrated domain to stop before it moves the
console log aside. A domain that does not stop in time means the console log
is not migrated; the migration itself always goes on.
"""),
    cfg.IntOpt(
        'reaper_interval',
        default=600,
        min=0,
        help="""
Seconds between runs of the periodic task that undefines shut-off source
domains left defined by console-log migration, once the instance lives on
another host. 0 disables the task.
"""),
    cfg.IntOpt(
        'evacuation_collect_max_age',
        min=0,
        help="""
Seconds during which the host an instance was evacuated to keeps trying to
collect the console history left on the old host. The old host is usually
down: the periodic task probes it with a short timeout, backing off, and
collects the history once the old host is back and has stashed it before
nova deletes its copy of the instance. After this age the destination gives
up with a warning; the output from before the evacuation is then lost.
Unset: ``stash_expiry``.
"""),
    cfg.IntOpt(
        'partial_import_max_age',
        min=0,
        help="""
Seconds after which the periodic task deletes the staging file and progress
record of an import into this host that nobody finished: a pull killed with
its host, or one from a source that never came back. A staging file a
running pull holds is never deleted, whatever its age; a pull that comes
back later starts over. Unset: ``stash_expiry``, after which the source has
deleted the stash that could have resumed it anyway.
"""),
]

upgrade_opts = [
    cfg.StrOpt(
        'consolelog',
        help="""
Version cap for the console-log RPC API: a version such as ``1.0``, or the
name of a release (``nova-34``, the release built for nova 34) meaning the
newest version that release speaks. Set it during a rolling upgrade until
every compute host runs a release that understands the newer version. Any
other value keeps console-log migration from starting on this host.
"""),
]

ALL_CONSOLELOG_OPTS = (path_opts + read_opts + history_opts + transfer_opts +
                       migration_opts)


def register_opts(conf):
    """Register this project's options on ``conf`` (idempotent).

    Each ConfigOpts gets an OptGroup object of its own: oslo.config keeps
    an option's override inside the registered group, and
    ``register_group`` only makes a shallow copy, so a module-level group
    shared by two ConfigOpts would share their overrides too (two hosts in
    one process would see one ``instances_path``).
    """
    conf.register_group(_group())
    conf.register_opts(ALL_CONSOLELOG_OPTS, group=GROUP)
    conf.register_opts(upgrade_opts, group='upgrade_levels')


def list_opts():
    """Options for oslo-config-generator, grouped as in the config file."""
    return [
        (_group(), ALL_CONSOLELOG_OPTS),
        ('upgrade_levels', upgrade_opts),
    ]


# The stash directory under the instances path when ``stash_path`` is unset.
STASH_DIR_NAME = '.consolelog-stash'


def stash_path(conf, instances_path=None):
    """The stash directory: ``[consolelog] stash_path`` or its default.

    The default is ``STASH_DIR_NAME`` under ``instances_path`` (the
    driver passes nova's; default ``[consolelog] instances_path``). The one
    place that knows the default: every caller asks here.
    """
    group = conf[GROUP]
    if group.stash_path:
        return group.stash_path
    if instances_path is None:
        instances_path = group.instances_path
    return '%s/%s' % (instances_path.rstrip('/'), STASH_DIR_NAME)


CONF = cfg.CONF
register_opts(CONF)
