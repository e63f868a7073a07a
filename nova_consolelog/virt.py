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

"""What console-log migration needs from libvirt.

* ``console_log_path()``: where a domain's console log is, from its XML in
  the shapes nova writes.
* ``migration_flags()`` / ``check_flags()``: nova always adds
  ``VIR_MIGRATE_UNDEFINE_SOURCE``; the source domain must stay defined
  instead, shut off, so that its XML still names the console log after the
  guest has moved and nothing on the source can restart QEMU under the log
  (the blueprint's rule). When the flag is forced anyway, the console log is
  simply not migrated; the migration is never failed for it.
* ``wait_for_shutoff()``: the source may move the console log aside only
  when its QEMU has stopped writing: virtlogd keeps the file open while the
  source QEMU runs, and lines written after the move would be lost.
* ``Reaper``: the source domains left defined by the above are undefined
  once the instance lives on another host and its console log has been
  handed over (or its stash has expired).

Everything here works on any libvirt connection object (libvirt-python's,
nova's ``Host.get_connection()``, fakelibvirt's) and never starts a domain.
"""

import collections
import contextlib
import threading
import time
from xml.etree import ElementTree

import libvirt
from oslo_log import log as logging

from nova_consolelog import exception

LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Console log path
# ---------------------------------------------------------------------------


def _domain_xml(domain_or_xml):
    if isinstance(domain_or_xml, bytes):
        try:
            return domain_or_xml.decode('utf-8')
        except UnicodeDecodeError as e:
            raise exception.InvalidInput(
                reason='domain XML is not UTF-8: %s' % e)
    if isinstance(domain_or_xml, str):
        return domain_or_xml
    xml_desc = getattr(domain_or_xml, 'XMLDesc', None)
    if xml_desc is None:
        raise exception.InvalidInput(
            reason='expected a libvirt domain or its XML, got %s' %
            type(domain_or_xml).__name__)
    return xml_desc(0)


def _target_port(device):
    target = device.find('target')
    if target is None:
        return None
    try:
        return int(target.get('port'))
    except (TypeError, ValueError):
        return None


def _device_log_path(device):
    """The file a character device logs to, or None.

    ``<log file=.../>`` is virtlogd's log of a ``pty`` or ``tcp`` device;
    a ``file`` device writes to its ``<source path=.../>`` (nova before
    virtlogd, and fakelibvirt). The ``<source path>`` of a ``pty`` is the
    terminal, not a log.
    """
    log = device.find('log')
    if log is not None and log.get('file'):
        return log.get('file')
    if device.get('type') == 'file':
        source = device.find('source')
        if source is not None and source.get('path'):
            return source.get('path')
    return None


def console_log_path(domain_or_xml):
    """The console log file of a domain, or None when it logs nowhere.

    :param domain_or_xml: a libvirt domain (anything with ``XMLDesc``) or
        its XML as ``str``/``bytes``.
    :raises InvalidInput: the argument is neither, or the XML is not a
        domain.

    nova writes a ``<serial type="pty">`` with
    ``<log file="<instance dir>/console.log" append="off"/>``; with
    ``[serial_console] enabled`` it writes ``tcp`` serials instead and only
    port 0 gets the ``<log>`` (the first serial port receives the boot
    messages); ``file`` serials/consoles write to ``<source path>``. Serial
    devices come first, port 0 before the others, then consoles. A path is
    returned as written in the XML (fakelibvirt writes a relative one).
    """
    xml = _domain_xml(domain_or_xml)
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise exception.InvalidInput(reason='bad domain XML: %s' % e)
    if root.tag != 'domain':
        raise exception.InvalidInput(
            reason='expected <domain>, got <%s>' % root.tag)
    devices = root.find('devices')
    if devices is None:
        return None
    serials = sorted(devices.findall('serial'),
                     key=lambda d: (_target_port(d) != 0))
    for device in serials + devices.findall('console'):
        path = _device_log_path(device)
        if path:
            return path
    return None


# ---------------------------------------------------------------------------
# Migration flags
# ---------------------------------------------------------------------------


def migration_flags(flags, enabled):
    """nova's live-migration flags, adjusted for console-log migration.

    With console-log migration ``enabled``, ``VIR_MIGRATE_UNDEFINE_SOURCE``
    is dropped: the source domain stays defined and shut off, still naming
    its console log, until the ``Reaper`` undefines it. Otherwise the flags
    are returned unchanged (nova's behaviour).
    """
    if enabled:
        return flags & ~libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    return flags


def check_flags(flags):
    """Whether console-log migration can work with these flags.

    Never raises: with ``VIR_MIGRATE_UNDEFINE_SOURCE`` set (another driver
    layer forced it back) it logs a warning and returns False, and the
    caller leaves the console log alone while the migration goes on.
    """
    if flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE:
        LOG.warning('VIR_MIGRATE_UNDEFINE_SOURCE is set in the live '
                    'migration flags (%#x): the console log will not be '
                    'migrated.', flags)
        return False
    return True


# ---------------------------------------------------------------------------
# Event loop and waiting for the source domain to stop
# ---------------------------------------------------------------------------


class EventLoop:
    """libvirt's default event loop, run by one daemon thread.

    libvirt delivers domain events only while an event implementation is
    registered and something runs it; registering twice in a process breaks
    the running loop, hence a process-wide, start-once helper. Register it
    *before* opening a remote connection: the remote driver only watches
    its socket for events when an implementation exists at open time.
    nova-compute runs its own loop (``Host._init_events``): do not start
    this one there; ``wait_for_shutoff`` works with nova's loop as well.
    """

    _lock = threading.Lock()
    _thread = None

    @classmethod
    def start(cls):
        """Register and run the loop once per process; later calls no-op."""
        with cls._lock:
            if cls._thread is not None:
                return
            libvirt.virEventRegisterDefaultImpl()
            cls._thread = threading.Thread(
                target=cls._run, name='libvirt-event-loop', daemon=True)
            cls._thread.start()

    @classmethod
    def running(cls):
        return cls._thread is not None and cls._thread.is_alive()

    @staticmethod
    def _run():
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except libvirt.libvirtError as e:
                # One failed iteration must not end event delivery for the
                # whole process; waits fall back to polling meanwhile.
                LOG.warning('libvirt event loop iteration failed: %s', e)
                time.sleep(1)


def _is_no_domain(error):
    return error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _is_shutoff(domain):
    """True when shut off or gone; re-raises other libvirt errors."""
    try:
        state, _reason = domain.state()
    except libvirt.libvirtError as e:
        if _is_no_domain(e):
            return True
        raise
    return state == libvirt.VIR_DOMAIN_SHUTOFF


def wait_for_shutoff(conn, domain, timeout, poll_interval=0.5):
    """Wait until the source ``domain`` has stopped; True when it has.

    After a successful live migration without ``UNDEFINE_SOURCE`` libvirt
    reports the source domain shut off (reason "migrated"). A lifecycle
    event wakes the wait at once when an event loop runs (``EventLoop`` or
    nova's); ``domain.state()`` is polled every ``poll_interval`` seconds
    anyway, so a missing loop only costs latency. Returns False when the
    domain is still not shut off after ``timeout`` seconds (or libvirt
    cannot tell): the caller then gives up the console log, never the
    migration. Never raises and never blocks much past ``timeout``.
    ``conn`` None means polling only (a caller that leaves the connection's
    event callbacks to their owner, as the nova driver does).

    A domain that has vanished (someone undefined it, or it was transient)
    counts as stopped: no QEMU writes its console log on this host any
    more, which is what the caller waits for. Whether the log file is still
    there is for the caller to find out (with ``UNDEFINE_SOURCE`` forced,
    nova's cleanup may already have deleted it).
    """
    deadline = time.monotonic() + timeout
    woken = threading.Event()

    def on_lifecycle(_conn, _dom, event, _detail, _opaque):
        if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED,
                     libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
            woken.set()

    callback_id = None
    if conn is not None:
        try:
            callback_id = conn.domainEventRegisterAny(
                domain, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle,
                None)
        except libvirt.libvirtError as e:
            LOG.debug('No lifecycle events (%s); polling domain state.', e)
    try:
        while True:
            try:
                if _is_shutoff(domain):
                    return True
            except libvirt.libvirtError as e:
                LOG.warning('Cannot read the state of domain %s: %s',
                            _uuid_or_name(domain), e)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                LOG.warning('Domain %s did not shut off within %s s.',
                            _uuid_or_name(domain), timeout)
                return False
            woken.wait(min(poll_interval, remaining))
    finally:
        if callback_id is not None:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError as e:
                LOG.debug('Deregistering lifecycle callback: %s', e)


def _uuid_or_name(domain):
    try:
        return domain.UUIDString()
    except libvirt.libvirtError:
        return '<unknown>'


# ---------------------------------------------------------------------------
# Leftover source domains
# ---------------------------------------------------------------------------

UNDEFINED = 'undefined'
KEPT = 'kept'
FAILED = 'failed'

# One decision of the reaper: ``action`` is UNDEFINED, KEPT or FAILED.
Reaped = collections.namedtuple('Reaped', ['uuid', 'action', 'reason'])


def _has_nvram(domain):
    try:
        root = ElementTree.fromstring(domain.XMLDesc(0))
    except ElementTree.ParseError:
        return False
    return root.find('os/nvram') is not None


def undefine(domain):
    """Undefine a shut-off domain the way nova does.

    nova's ``Guest.delete_configuration`` undefines with
    ``VIR_DOMAIN_UNDEFINE_MANAGED_SAVE``, adds ``VIR_DOMAIN_UNDEFINE_NVRAM``
    for UEFI guests (which have an ``<nvram>``; libvirt refuses to undefine
    them without it), and retries a plain ``undefine()`` when libvirt
    rejects the flags.
    """
    flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    if _has_nvram(domain):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    try:
        domain.undefineFlags(flags)
    except libvirt.libvirtError as e:
        if _is_no_domain(e):
            raise
        LOG.debug('undefineFlags(%#x) failed (%s); retrying undefine().',
                  flags, e)
        domain.undefine()


class Reaper:
    """Undefines the shut-off source domains console-log migration leaves.

    A domain is undefined only when all hold, checked in this order:

    * it is shut off (a running, paused, ... domain is never touched);
    * ``instance_host(uuid)`` names another host than ``host`` (nova's
      domain UUID is the instance UUID; nova answers from its database).
      ``None`` (unknown instance, not nova's domain, lookup failed) leaves
      it alone;
    * the console log has been handed over: ``stash_age(uuid)`` is None
      (no stash left), or the stash is older than ``stash_expiry`` seconds.

    :param conn: libvirt connection of this host.
    :param host: this compute host's name.
    :param instance_host: ``callable(uuid) -> host name or None``.
    :param stash_age: ``callable(uuid) -> seconds or None``: age of the
        instance's console-log stash on this host, None when there is none.
    :param stash_expiry: seconds after which a stash counts as given up
        (the caller's ``[consolelog] stash_expiry``).
    :param instance_lock: optional ``callable(uuid) -> context manager``
        held around the final check and the undefine (nova's per-instance
        lock), so an incoming migration of the same instance cannot
        interleave.
    """

    def __init__(self, conn, host, instance_host, stash_age,
                 stash_expiry, instance_lock=None):
        self.conn = conn
        self.host = host
        self.instance_host = instance_host
        self.stash_age = stash_age
        self.stash_expiry = stash_expiry
        self.instance_lock = instance_lock or (
            lambda uuid: contextlib.nullcontext())

    def __call__(self):
        return self.run()

    def run(self):
        """One pass over this host's domains; a list of ``Reaped``."""
        try:
            domains = self.conn.listAllDomains(0)
        except libvirt.libvirtError as e:
            LOG.warning('Cannot list domains: %s', e)
            return []
        results = []
        for domain in domains:
            try:
                uuid = domain.UUIDString()
                with self.instance_lock(uuid):
                    result = self._reap_one(uuid, domain)
            except libvirt.libvirtError as e:
                if _is_no_domain(e):
                    continue  # undefined meanwhile by someone else
                result = self._failed(domain, e)
            except Exception as e:
                # A failing callback (nova's database) must not end the
                # periodic task; the domain is looked at again next pass.
                result = self._failed(domain, e)
            results.append(result)
        return results

    @staticmethod
    def _failed(domain, error):
        uuid = _uuid_or_name(domain)
        LOG.warning('Leftover domain %s not checked or undefined: %s',
                    uuid, error)
        return Reaped(uuid, FAILED, str(error))

    def _decide(self, uuid):
        """(undefine?, reason) from the database and the stash."""
        owner = self.instance_host(uuid)
        if owner is None:
            return False, 'instance unknown'
        if owner == self.host:
            return False, 'instance still on this host'
        age = self.stash_age(uuid)
        if age is None:
            return True, 'instance on %s, console log handed over' % owner
        if age >= self.stash_expiry:
            return True, 'instance on %s, stash expired (%d s old)' % (
                owner, age)
        return False, 'instance on %s, stash pending' % owner

    def _reap_one(self, uuid, domain):
        # Checked under the instance lock, right before the undefine: an
        # incoming migration of the same instance may start it any time.
        if not _is_shutoff(domain):
            return Reaped(uuid, KEPT, 'domain not shut off')
        undefine_it, reason = self._decide(uuid)
        if not undefine_it:
            LOG.debug('Leftover domain %s kept: %s', uuid, reason)
            return Reaped(uuid, KEPT, reason)
        undefine(domain)
        LOG.info('Undefined leftover domain %s: %s', uuid, reason)
        return Reaped(uuid, UNDEFINED, reason)
