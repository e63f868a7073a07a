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

"""nova's libvirt driver with console-log migration.

The only package of this project that imports nova (tested with nova
34.0.0). nova loads a compute driver only as ``nova.virt.<compute_driver>``,
so the thin package ``nova/virt/consolelog`` re-exports ``LibvirtDriver``
and operators set ``[DEFAULT] compute_driver = consolelog.LibvirtDriver``.

The driver is one class, ``driver.LibvirtDriver``, made of nova's and of
one mixin per kind of operation it hooks into, each module saying where
and why:

``live``
    live migration: the chain moved aside, stashed before nova's cleanup,
    imported at the destination, given back at a rollback; the migrated
    source domain left defined for the reaper.
``cold``
    cold migration and resize: a stash held until the confirm.
``restarts``
    every new QEMU on the same host, and a rebuild.
``periodic``
    the periodic task: retries and clean-ups, the leftover-domain reaper.

No console-log step raises into nova: ``ConsoleLogMigration`` guards
every step (``handover.guard``, the one guard), so the driver calls them
plainly. ``get_console_output`` serves the merged history and falls back to
nova's read on any failure of ours.

Configuration: nova's global CONF is read once, when the driver is made
(``private_conf``); everything below gets the driver's own ConfigOpts.
"""

from nova_consolelog.nova_driver.driver import LibvirtDriver  # noqa: F401
from nova_consolelog.nova_driver.driver import private_conf  # noqa: F401
