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

"""Waiting for the migrated source domain to stop, and libvirt's event loop.

The source may move the console log aside only when its QEMU has stopped
writing: virtlogd keeps the file open while the source QEMU runs, and lines
written after the move would be lost.
"""

import threading
import time

import libvirt
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


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


def is_no_domain(error):
    return error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def is_shutoff(domain):
    """True when shut off or gone; re-raises other libvirt errors."""
    try:
        state, _reason = domain.state()
    except libvirt.libvirtError as e:
        if is_no_domain(e):
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
                if is_shutoff(domain):
                    return True
            except libvirt.libvirtError as e:
                LOG.warning('Cannot read the state of domain %s: %s',
                            uuid_or_name(domain), e)
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                LOG.warning('Domain %s did not shut off within %s s.',
                            uuid_or_name(domain), timeout)
                return False
            woken.wait(min(poll_interval, remaining))
    finally:
        if callback_id is not None:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError as e:
                LOG.debug('Deregistering lifecycle callback: %s', e)


def uuid_or_name(domain):
    try:
        return domain.UUIDString()
    except libvirt.libvirtError:
        return '<unknown>'
