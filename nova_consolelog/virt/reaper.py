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

"""The leftover-domain reaper.

The source domains console-log migration leaves defined (see ``flags``)
are undefined once the instance lives on another host and its console log
has been handed over (or its stash has expired).
"""

import collections
import contextlib
from xml.etree import ElementTree

import libvirt
from oslo_log import log as logging

from nova_consolelog.virt.shutoff import is_no_domain
from nova_consolelog.virt.shutoff import is_shutoff
from nova_consolelog.virt.shutoff import uuid_or_name

LOG = logging.getLogger(__name__)


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
        if is_no_domain(e):
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
                if is_no_domain(e):
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
        uuid = uuid_or_name(domain)
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
        if not is_shutoff(domain):
            return Reaped(uuid, KEPT, 'domain not shut off')
        undefine_it, reason = self._decide(uuid)
        if not undefine_it:
            LOG.debug('Leftover domain %s kept: %s', uuid, reason)
            return Reaped(uuid, KEPT, reason)
        undefine(domain)
        LOG.info('Undefined leftover domain %s: %s', uuid, reason)
        return Reaped(uuid, UNDEFINED, reason)
