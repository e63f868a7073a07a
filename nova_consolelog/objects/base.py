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

"""Base class, registry and serializer of nova-consolelog's objects.

Our objects use their own namespace and registry so that they can travel
next to nova's objects without ever being confused with them, as os-vif's
objects do.
"""

from oslo_versionedobjects import base as ovo_base

NAMESPACE = 'nova_consolelog'


class ConsoleLogObjectRegistry(ovo_base.VersionedObjectRegistry):
    """Registry of nova-consolelog's versioned objects."""


class ConsoleLogObject(ovo_base.VersionedObject,
                       ovo_base.ComparableVersionedObject):
    """Base class of every nova-consolelog versioned object."""

    OBJ_PROJECT_NAMESPACE = NAMESPACE
    OBJ_SERIAL_NAMESPACE = 'nova_consolelog_object'

    def __init__(self, context=None, **kwargs):
        # oslo.versionedobjects does not apply field defaults by itself: an
        # unset field raises on access. Apply them, so that an object built
        # with fewer fields, or received from an older peer (its primitive
        # lacks the newer fields), reads as the defaults say.
        super().__init__(context, **kwargs)
        self.obj_set_defaults()


class ConsoleLogObjectSerializer(ovo_base.VersionedObjectSerializer):
    """Serializer for oslo.messaging: turns our objects into primitives."""

    OBJ_BASE_CLASS = ConsoleLogObject
