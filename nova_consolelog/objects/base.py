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

from oslo_utils import versionutils
from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import exception as ovo_exception
from oslo_versionedobjects import fields

from nova_consolelog import exception
from nova_consolelog import names

NAMESPACE = 'nova_consolelog'

# What a malformed primitive makes oslo.versionedobjects (or our fields)
# raise: a missing key, a list where a dict belongs, a string where a
# number belongs, a version that is no version, base64 that is not...
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError,
              NotImplementedError, RecursionError,
              ovo_exception.VersionedObjectsException)


def _invalid(error):
    """InvalidInput for a primitive that raised ``error``; short."""
    if isinstance(error, exception.InvalidInput):
        return error
    reason = 'malformed console-log object: %s: %s' % (
        type(error).__name__, exception.bounded(str(error), 160))
    if isinstance(error, ovo_exception.IncompatibleObjectVersion):
        return exception.ObjectVersionUnsupported(reason=reason)
    return exception.InvalidInput(reason=reason)


def _ours(objclass):
    """Whether ``objclass`` is one of our objects, of our namespace."""
    return (isinstance(objclass, type) and
            issubclass(objclass, ConsoleLogObject) and
            objclass.OBJ_PROJECT_NAMESPACE == NAMESPACE)


class ConsoleLogObjectRegistry(ovo_base.VersionedObjectRegistry):
    """Registry of nova-consolelog's versioned objects.

    oslo.versionedobjects keeps one class table for every registry in a
    process: ``obj_classes()`` of ours also lists nova's and os-vif's
    objects (inside nova-compute), some under the same names. Use
    ``console_log_classes()`` for ours alone.
    """

    @classmethod
    def console_log_classes(cls):
        """``{name: [class, ...]}`` of our namespace only, newest first."""
        ours = {}
        for name, classes in cls.obj_classes().items():
            mine = [c for c in classes if _ours(c)]
            if mine:
                ours[name] = mine
        return ours


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

    @classmethod
    def obj_class_from_name(cls, objname, objver):
        """Our class ``objname`` best matching ``objver``; only ours.

        Why: oslo.versionedobjects keeps one class table for every registry
        in the process (nova's objects, os-vif's, ours), and its lookup
        hands out any class of that name. A primitive from the bus must
        only ever become one of our objects.
        """
        if not isinstance(objname, str) or not isinstance(objver, str):
            raise exception.InvalidInput(
                reason='malformed console-log object: name and version '
                       'must be strings')
        classes = ConsoleLogObjectRegistry.console_log_classes().get(
            objname, [])
        if not classes:
            raise exception.InvalidInput(
                reason='unknown console-log object %s' % (
                    exception.bounded(objname, 64),))
        try:
            wanted = versionutils.convert_version_to_tuple(objver)
        except (TypeError, ValueError):
            wanted = None
        if wanted is None or len(wanted) not in (2, 3):
            raise exception.InvalidInput(
                reason='malformed version %s of console-log object %s' % (
                    exception.bounded(objver, 32), objname))
        # Sorted newest first by the registry, like its own lookup.
        for objclass in classes:
            if objclass.VERSION == objver:
                return objclass
        for objclass in classes:
            if versionutils.is_compatible(objver, objclass.VERSION):
                return objclass
        raise exception.ObjectVersionUnsupported(
            reason='%s %s is not supported (latest %s)' % (
                objname, exception.bounded(objver, 32), classes[0].VERSION))

    @classmethod
    def obj_from_primitive(cls, primitive, context=None):
        """The object of ``primitive``; InvalidInput when malformed.

        Why: primitives come from the bus, where anyone holding its
        credentials can send any JSON; whatever is wrong with one must
        reach the caller as a typed, short error, never as a raw
        KeyError or TypeError (or a class of another project).
        """
        try:
            if not isinstance(primitive, dict):
                raise TypeError('a primitive is a dict, not %s' % (
                    type(primitive).__name__,))
            data = primitive.get(cls._obj_primitive_key('data'))
            if not isinstance(data, dict):
                raise TypeError('the data of a primitive is a dict, not %s'
                                % (type(data).__name__,))
            obj = super().obj_from_primitive(primitive, context=context)
        except _MALFORMED as e:
            raise _invalid(e) from None
        # oslo.versionedobjects builds an object from whatever fields the
        # data holds; a field left unset raises NotImplementedError where
        # it is read, deep inside a pull. Refuse it here instead.
        missing = sorted(name for name, field in obj.fields.items()
                         if not obj.obj_attr_is_set(name) and
                         field.default == fields.UnspecifiedDefault)
        if missing:
            raise exception.InvalidInput(
                reason='console-log object %s without %s' % (
                    obj.obj_name(), ', '.join(missing)))
        # oslo's UUIDField only warns about a value that is no uuid; ours
        # become directory names and queue contents: refuse them.
        for name, field in obj.fields.items():
            if isinstance(field, fields.UUIDField) and obj.obj_attr_is_set(
                    name) and getattr(obj, name) is not None:
                names.check_instance_uuid(getattr(obj, name))
        # Nested objects are built through the parent's class (an Object
        # field checks their type itself): any class of ours is fine here.
        if not _ours(type(obj)):
            raise exception.InvalidInput(
                reason='%s is not a console-log object' % (
                    type(obj).__name__,))
        return obj


class ConsoleLogObjectSerializer(ovo_base.VersionedObjectSerializer):
    """Serializer for oslo.messaging: turns our objects into primitives.

    Deserialising a malformed primitive raises InvalidInput (the
    dispatcher sends it back to the caller typed), whatever is wrong.
    """

    OBJ_BASE_CLASS = ConsoleLogObject

    def deserialize_entity(self, context, entity):
        try:
            return super().deserialize_entity(context, entity)
        except _MALFORMED as e:
            raise _invalid(e) from None
