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

"""Live-migration flags for console-log migration.

nova always adds ``VIR_MIGRATE_UNDEFINE_SOURCE``; the source domain must
stay defined instead, shut off, so that its XML still names the console log
after the guest has moved and nothing on the source can restart QEMU under
the log (the blueprint's rule). When the flag is forced anyway, the console
log is simply not migrated; the migration is never failed for it.
"""

import libvirt
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


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
