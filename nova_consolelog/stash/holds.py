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

"""A resize's held stash: kept on the source until the confirm.

A cold migration or resize can be reverted after the destination
installed the source's console log, so the source's stash is *held*: an
install only marks it, the confirm deletes it (``handover.cold``).
"""

from nova_consolelog.stash import manifest as cl_manifest


class HeldStash:
    """Mixin of ``store.Stash``: the hold in the manifest, and settling it.

    Uses the stash's ``manifest``, ``_rewrite_manifest`` and ``release``.
    """

    @property
    def held(self):
        """True for a resize's stash, kept until the resize is confirmed."""
        return self.manifest.get('hold') == cl_manifest.HOLD_CONFIRM

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
