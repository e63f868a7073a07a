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

"""A bytes field that survives oslo.messaging.

oslo.messaging serialises messages with JSON and decodes raw bytes as UTF-8,
which breaks on console output (any byte value can appear in it).
oslo.versionedobjects has no bytes field, so this one carries its value as
base64 text in the primitive form and accepts only bytes-like values.
"""

import binascii

from oslo_versionedobjects import fields


class Bytes(fields.FieldType):
    """Bytes, serialised as base64 ASCII text."""

    @staticmethod
    def coerce(obj, attr, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise ValueError('%s must be bytes, not %s' % (
            attr, type(value).__name__))

    @staticmethod
    def to_primitive(obj, attr, value):
        return binascii.b2a_base64(value, newline=False).decode('ascii')

    @staticmethod
    def from_primitive(obj, attr, value):
        if not isinstance(value, str):
            raise ValueError('%s must be base64 text, not %s' % (
                attr, type(value).__name__))
        try:
            # binascii's strict mode rejects what b64decode(validate=True)
            # rejects, without its regular-expression pass over the data.
            return binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError('%s is not valid base64: %s' % (attr, e))

    @staticmethod
    def stringify(value):
        return '<%d bytes>' % len(value)

    def get_schema(self):
        return {'type': ['string'], 'contentEncoding': 'base64'}


class BytesField(fields.AutoTypedField):
    AUTO_TYPE = Bytes()


class Compression(fields.Enum):
    """How the data of a chunk is encoded on the wire."""

    NONE = 'none'
    ZLIB = 'zlib'

    ALL = (NONE, ZLIB)

    def __init__(self):
        super().__init__(valid_values=self.ALL)


class CompressionField(fields.BaseEnumField):
    AUTO_TYPE = Compression()


class FileKind(fields.Enum):
    """What a file of a console-log chain is.

    ``history``: imported from another host, under a name virtlogd never
    touches; ``backup``: a virtlogd rotation backup ``console.log.N``;
    ``log``: virtlogd's current ``console.log``.
    """

    HISTORY = 'history'
    BACKUP = 'backup'
    LOG = 'log'

    ALL = (HISTORY, BACKUP, LOG)

    def __init__(self):
        super().__init__(valid_values=self.ALL)


class FileKindField(fields.BaseEnumField):
    AUTO_TYPE = FileKind()
