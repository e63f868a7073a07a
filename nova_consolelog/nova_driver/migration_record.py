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

"""The hosts of an instance's migration, as nova's database records them.

A resize's destination (the stash is granted to it) and an evacuation's
source (the new host owes its older output) come from the same record:
the ``Migration`` named by the instance's migration context.
"""

from nova import objects


def migration_host(context, instance, field, log, unknown):
    """``field`` of the instance's current Migration, or None.

    :param field: ``'source_compute'`` or ``'dest_compute'``.
    :param log: the caller's logger, which warns ``unknown`` (a format
        with one ``%s``, the error) when nova's database does not say.
    """
    try:
        mig = objects.Migration.get_by_id_and_instance(
            context, instance.migration_context.migration_id, instance.uuid)
        return getattr(mig, field)
    except Exception as e:
        log.warning(unknown, e, instance=instance)
        return None
