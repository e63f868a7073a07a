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

"""An import that must not wait for a slot inside nova's request.

nova calls ``post_live_migration_at_destination`` (and ``finish_migration``)
inside its own request: waiting there for one of the
``max_concurrent_imports`` slots (``transfer.gate``) would hold nova up
for as long as other imports take. So those steps, and the periodic retry,
run the import with ``gate.no_wait()``: when every slot is taken it
continues in a thread of its own, which waits its turn (visible in
``nova-consolelog status``). The hand-over record says ``pulling`` all
along, so console reads here keep taking the older part from the source;
if the process dies meanwhile, the periodic retry finds the record.
"""

import threading

from oslo_log import log as logging

from nova_consolelog import exception
from nova_consolelog.transfer import gate

LOG = logging.getLogger(__name__)


def run_or_defer(importer, instance_uuid, source_host, shared_instance_path):
    """``importer.run`` now, or in the background when no slot is free.

    Returns what ``importer.run`` returned, or False when deferred.
    Exceptions of an import run now propagate as from ``importer.run``.
    """
    try:
        with gate.no_wait():
            return importer.run(instance_uuid, source_host,
                                shared_instance_path)
    except exception.ImportSlotBusy as e:
        LOG.info('%s; it continues in the background, console reads take '
                 'the older part from %s meanwhile', e, source_host)
    thread = threading.Thread(
        target=_in_background,
        args=(importer, instance_uuid, source_host, shared_instance_path),
        name='consolelog-import-%s' % instance_uuid, daemon=True)
    thread.start()
    return False


def _in_background(importer, instance_uuid, source_host,
                   shared_instance_path):
    try:
        importer.run(instance_uuid, source_host, shared_instance_path)
    except Exception as e:
        # The record still says "pulling": the periodic task retries.
        LOG.warning('Console-log import of instance %s from %s failed in '
                    'the background; the periodic task retries it: %s',
                    instance_uuid, source_host, e)
