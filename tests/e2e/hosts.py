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

"""Two libvirt "hosts" on one machine, for real live migrations.

Each host is a network namespace (``ip netns``) joined to the other by a
veth pair (198.18.0.1/30 and 198.18.0.2/30, from the benchmarking range),
running its own ``virtlogd`` and monolithic ``libvirtd`` without systemd.
Inside ``ip netns exec`` (which gives the daemons a mount namespace of
their own) the host's private directories are bind-mounted over
``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt`` and
``/var/log/libvirt``, so the two daemons share nothing but the kernel:
distinct ``host_uuid`` (libvirt refuses to migrate to "the same host"),
TCP listener with ``auth_tcp = "none"`` for the peer-to-peer migration,
``cgroup_controllers = [ ]`` (no systemd, no cgroup delegation).

Instance directories, as nova sees them:

* not shared: each host bind-mounts its own ``<root>/<host>/instances`` at
  the common ``<root>/instances`` -- the path in the domain XML is the same
  on both hosts (as nova's ``instances_path`` is), the files are not;
* shared: ``<root>/shared-instances`` is the same directory for both.

The test process reaches each daemon on its UNIX socket
(``qemu+unix:///system?socket=...``); the daemons reach each other over
the veth (``qemu+tcp://198.18.0.x/system``, migration stream on the same
address). Everything is torn down by the fixture's cleanup, and leftovers
of a crashed run (same fixed names) are removed at the next start.
"""

import os
import shutil
import signal
import subprocess
import time

import fixtures
import libvirt

from tests.e2e import guest

ROOT = '/var/tmp/nclog-e2e'
NETNS_PREFIX = 'nclog-e2e-'
PRIVATE_INSTANCES = os.path.join(ROOT, 'instances')
SHARED_INSTANCES = os.path.join(ROOT, 'shared-instances')
BIND_TARGETS = ('/etc/libvirt', '/run/libvirt', '/var/lib/libvirt',
                '/var/log/libvirt')
REQUIRED_TOOLS = ('libvirtd', 'virtlogd', 'qemu-system-x86_64', 'ip', 'as',
                  'ld')

# virtlogd rotates small files here so that every stay of a guest on a
# host (300+ lines of 14 bytes) crosses a rollover; 16 backups keep every
# line a test writes (virtlogd deletes older ones).
VIRTLOGD_MAX_SIZE = 4096
VIRTLOGD_MAX_BACKUPS = 16

LIBVIRTD_CONF = """\
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
host_uuid = "%(host_uuid)s"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""

VIRTLOGD_CONF = """\
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
max_size = %(max_size)d
max_backups = %(max_backups)d
"""


class HarnessUnavailable(Exception):
    """This machine cannot run the e2e harness; the message says why."""


def check_requirements():
    """Raise HarnessUnavailable with instructions when something's missing."""
    if os.geteuid() != 0:
        raise HarnessUnavailable(
            'the e2e tests create network namespaces and run libvirtd: '
            'run them as root (sudo tox -e e2e)')
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise HarnessUnavailable(
            'missing %s: install the e2e packages with '
            '"tools/setup-host.sh e2e" (as root)' % ', '.join(missing))


def _run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _netns_pids(netns):
    result = _run('ip', 'netns', 'pids', netns, check=False)
    return [int(p) for p in result.stdout.split()]


def _kill_netns_processes(netns, grace=10.0):
    """Stop every process in ``netns`` (daemons, QEMU): TERM, then KILL."""
    pids = _netns_pids(netns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = _netns_pids(netns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cleanup_leftovers(root=ROOT, netns_prefix=NETNS_PREFIX):
    """Remove what a crashed earlier run left: processes, netns, files."""
    result = _run('ip', 'netns', 'list', check=False)
    for line in result.stdout.splitlines():
        netns = line.split()[0] if line.split() else ''
        if netns.startswith(netns_prefix):
            _kill_netns_processes(netns)
            _run('ip', 'netns', 'del', netns, check=False)
    shutil.rmtree(root, ignore_errors=True)


class Host:
    """One libvirt host: a network namespace with virtlogd and libvirtd.

    Another suite (tests/nova_e2e) runs its hosts under other names: it
    overrides the class attributes and ``command``.
    """

    #: Where the hosts' directories are, and the prefix of their netns.
    root_dir = ROOT
    netns_prefix = NETNS_PREFIX
    #: Where each host bind-mounts its private instances directory (None:
    #: nowhere).
    common_instances = PRIVATE_INSTANCES

    def __init__(self, name, index, address, peer_address):
        self.name = name
        self.netns = self.netns_prefix + name
        self.veth = self.netns_prefix + name
        self.address = address
        self.peer_address = peer_address
        self.host_uuid = '6e636c6f-6700-4000-8000-%012d' % index
        self.root = os.path.join(self.root_dir, name)
        self.dirs = {target: os.path.join(self.root, target.strip('/')
                                          .replace('/', '-'))
                     for target in BIND_TARGETS}
        self.private_instances = os.path.join(self.root, 'instances')
        self.socket = os.path.join(self.dirs['/run/libvirt'], 'libvirt-sock')
        self.uri = 'qemu+unix:///system?socket=%s' % self.socket
        self.migrate_uri = 'qemu+tcp://%s/system' % address
        self.log_dir = self.dirs['/var/log/libvirt']
        self.conn = None
        self.process = None
        self.startup_seconds = None

    def instance_dir(self, uuid, shared):
        """Where this host's instance directory is, seen from the tests."""
        if shared:
            return os.path.join(SHARED_INSTANCES, uuid)
        return os.path.join(self.private_instances, uuid)

    def write_config(self):
        for path in list(self.dirs.values()) + [self.private_instances]:
            os.makedirs(path, exist_ok=True)
        etc = self.dirs['/etc/libvirt']
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write(LIBVIRTD_CONF % {'host_uuid': self.host_uuid})
        with open(os.path.join(etc, 'qemu.conf'), 'w') as f:
            f.write(QEMU_CONF)
        with open(os.path.join(etc, 'virtlogd.conf'), 'w') as f:
            f.write(VIRTLOGD_CONF % {'max_size': VIRTLOGD_MAX_SIZE,
                                     'max_backups': VIRTLOGD_MAX_BACKUPS})

    def start(self):
        """Spawn virtlogd and libvirtd inside the namespace (no wait)."""
        mounts = ''.join(
            'mount --bind %s %s\n' % (source, target)
            for target, source in self.dirs.items())
        if self.common_instances:
            mounts += 'mount --bind %s %s\n' % (self.private_instances,
                                                self.common_instances)
        script = (
            'mkdir -p %(targets)s\n'
            '%(mounts)s'
            'virtlogd --pid-file %(root)s/virtlogd.pid &\n'
            'exec libvirtd --listen --pid-file %(root)s/libvirtd.pid\n') % {
                'targets': ' '.join(BIND_TARGETS), 'mounts': mounts,
                'root': self.root}
        self._started = time.monotonic()
        out = open(os.path.join(self.root, 'daemons.out'), 'wb')
        self.process = subprocess.Popen(
            self.command(script),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

    def command(self, script):
        """The command running the daemons' shell ``script``."""
        return ['ip', 'netns', 'exec', self.netns, 'sh', '-ec', script]

    def wait_ready(self, timeout=120):
        """Connect once libvirtd answers (capability probing takes ~8 s)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise HarnessUnavailable(
                    'libvirtd of host %s exited with %s; see %s' % (
                        self.name, self.process.returncode, self.root))
            if os.path.exists(self.socket):
                try:
                    conn = libvirt.open(self.uri)
                    conn.getCapabilities()
                    break
                except libvirt.libvirtError:
                    pass
            if time.monotonic() > deadline:
                raise HarnessUnavailable(
                    'libvirtd of host %s not ready after %s s; see %s' % (
                        self.name, timeout, self.root))
            time.sleep(0.2)
        self.conn = conn
        self.startup_seconds = time.monotonic() - self._started

    def stop(self):
        if self.conn is not None:
            try:
                for dom in self.conn.listAllDomains(
                        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    dom.destroy()
            except libvirt.libvirtError:
                pass  # the processes are killed below anyway
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None
        _kill_netns_processes(self.netns)
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, name='libvirtd.log', size=4096):
        try:
            with open(os.path.join(self.log_dir, name), 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode('utf-8', 'replace')
        except OSError as e:
            return str(e)


class TwoHosts(fixtures.Fixture):
    """Hosts ``a`` (198.18.0.1) and ``b`` (198.18.0.2) and the guest image.

    Everything is torn down on cleanup, also when the setup fails halfway.

    Set ``NCLOG_E2E_KEEP=1`` to keep ``/var/tmp/nclog-e2e`` (daemon logs,
    console logs) after the run; ``NCLOG_E2E_VIRT_TYPE=qemu|kvm`` to skip
    probing whether KVM guests run here.
    """

    def _setUp(self):
        check_requirements()
        cleanup_leftovers()
        os.makedirs(PRIVATE_INSTANCES)
        os.makedirs(SHARED_INSTANCES)
        if not os.environ.get('NCLOG_E2E_KEEP'):
            self.addCleanup(shutil.rmtree, ROOT, True)
        self.image = guest.build_boot_image(ROOT)
        self.virt_type = os.environ.get('NCLOG_E2E_VIRT_TYPE') or (
            'kvm' if guest.kvm_works(self.image) else 'qemu')

        self.a = Host('a', 1, '198.18.0.1', '198.18.0.2')
        self.b = Host('b', 2, '198.18.0.2', '198.18.0.1')
        self.hosts = (self.a, self.b)
        for host in self.hosts:
            self.addCleanup(_run, 'ip', 'netns', 'del', host.netns,
                            check=False)
            _run('ip', 'netns', 'add', host.netns)
            _run('ip', '-n', host.netns, 'link', 'set', 'lo', 'up')
        _run('ip', 'link', 'add', self.a.veth, 'type', 'veth', 'peer',
             'name', self.b.veth)
        for host in self.hosts:
            _run('ip', 'link', 'set', host.veth, 'netns', host.netns)
            _run('ip', '-n', host.netns, 'addr', 'add',
                 host.address + '/30', 'dev', host.veth)
            _run('ip', '-n', host.netns, 'link', 'set', host.veth, 'up')
            host.write_config()
        for host in self.hosts:
            self.addCleanup(host.stop)
            host.start()
        for host in self.hosts:
            host.wait_ready()

    def host(self, name):
        return {h.name: h for h in self.hosts}[name]
