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

"""What console-log migration needs from libvirt, one module per job.

``console``
    ``console_log_path()``: where a domain's console log is, from its XML
    in the shapes nova writes.
``flags``
    ``migration_flags()`` / ``check_flags()``: nova always adds
    ``VIR_MIGRATE_UNDEFINE_SOURCE``; the source domain must stay defined
    instead, shut off, so that its XML still names the console log after
    the guest has moved and nothing on the source can restart QEMU under
    the log (the blueprint's rule). When the flag is forced anyway, the
    console log is simply not migrated; the migration is never failed for
    it.
``shutoff``
    ``wait_for_shutoff()``: the source may move the console log aside only
    when its QEMU has stopped writing: virtlogd keeps the file open while
    the source QEMU runs, and lines written after the move would be lost.
``reaper``
    ``Reaper``: the source domains left defined by the above are undefined
    once the instance lives on another host and its console log has been
    handed over (or its stash has expired).

The names are re-exported here. Everything works on any libvirt connection
object (libvirt-python's, nova's ``Host.get_connection()``, fakelibvirt's)
and never starts a domain.
"""

from nova_consolelog.virt.console import console_log_path  # noqa: F401
from nova_consolelog.virt.flags import check_flags  # noqa: F401
from nova_consolelog.virt.flags import migration_flags  # noqa: F401
from nova_consolelog.virt.reaper import FAILED  # noqa: F401
from nova_consolelog.virt.reaper import KEPT  # noqa: F401
from nova_consolelog.virt.reaper import Reaped  # noqa: F401
from nova_consolelog.virt.reaper import Reaper  # noqa: F401
from nova_consolelog.virt.reaper import undefine  # noqa: F401
from nova_consolelog.virt.reaper import UNDEFINED  # noqa: F401
from nova_consolelog.virt.shutoff import EventLoop  # noqa: F401
from nova_consolelog.virt.shutoff import wait_for_shutoff  # noqa: F401
