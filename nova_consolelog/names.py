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

"""Strict checks of the names that reach us from the bus or the command line.

The one module of input validation that the RPC endpoint, the pull engine,
the bulk channel, the command line and the versioned objects share: an
instance uuid, a host name, a stash or import id, a token is checked here
and nowhere else, so that every door refuses the same values with the same
words.

Why so strict: a host name becomes part of an RPC topic and routing key
(an AMQP wildcard such as ``*`` or ``#`` in a binding would make an
endpoint answer calls meant for other hosts), an instance uuid and a
stash id become directory names. Every check is a full match
(``re.fullmatch``: ``$`` would accept a trailing newline), takes only
``str``, and echoes at most a few dozen characters of a refused value.
"""

import re
import uuid

from nova_consolelog import exception

# A DNS-style host name (labels of letters, digits, '-', '_' and dots), as
# nova's CONF.host is in practice; no AMQP wildcard, no whitespace, no
# control character, no '..'.
HOST_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,253}')
STASH_ID_RE = re.compile(r'[A-Za-z0-9_-]{1,64}')
# Import ids (history_import) are file-name parts of the same alphabet.
IMPORT_ID_RE = STASH_ID_RE
# Transfer, release and bulk-window tokens: secrets.token_hex(16).
TOKEN_RE = re.compile(r'[0-9a-f]{32}')
# The textual forms of a uuid we accept: 32 hex digits, hyphens where the
# canonical form has them (or none), optionally in braces.
_UUID_RE = re.compile(r'\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}'
                      r'[0-9A-Fa-f]{12}\}?')
_ECHO = 64


def echo(value):
    """A short printable form of a refused ``value`` for error messages."""
    text = repr(value) if isinstance(value, str) else '<%s>' % (
        type(value).__name__)
    if len(text) > _ECHO:
        text = '%s...(%d more)' % (text[:_ECHO], len(text) - _ECHO)
    return text


def check_host_name(name):
    """``name`` if it is a usable host name, else InvalidInput."""
    if not (isinstance(name, str) and HOST_NAME_RE.fullmatch(name) and
            '..' not in name):
        raise exception.InvalidInput(
            reason='host name %s is not a host name (letters, digits, '
                   '".", "-", "_"; at most 254)' % echo(name))
    return name


def is_token(value):
    """Whether ``value`` is a token of ours (32 lowercase hex digits)."""
    return isinstance(value, str) and TOKEN_RE.fullmatch(value) is not None


def check_token(value):
    """``value`` if it is a token (``is_token``), else InvalidInput."""
    if not is_token(value):
        raise exception.InvalidInput(
            reason='a token is 32 lowercase hex digits')
    return value


def check_instance_uuid(value):
    """The canonical (lowercase, hyphenated) form of uuid ``value``.

    Every caller that makes a path or a reply out of an instance uuid uses
    this one check: the directory name is then the canonical form, never
    the caller's string.

    :raises InvalidInput: ``value`` is not a uuid.
    """
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise exception.InvalidInput(
            reason='malformed instance uuid %s' % echo(value))
    return str(uuid.UUID(value))


def check_stash_id(value):
    """``value`` if it is a stash id, else InvalidInput."""
    if not isinstance(value, str) or not STASH_ID_RE.fullmatch(value):
        raise exception.InvalidInput(
            reason='stash id must match %s, got %s' % (
                STASH_ID_RE.pattern, echo(value)))
    return value


def check_import_id(value):
    """``value`` if it is an import id, else InvalidInput."""
    if not isinstance(value, str) or not IMPORT_ID_RE.fullmatch(value):
        raise exception.InvalidInput(
            reason='import id must match %s, got %s' % (
                IMPORT_ID_RE.pattern, echo(value)))
    return value


def _type_of(value):
    return type(value).__name__


def check_int(what, value, low, high):
    """``value`` if it is an int (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(
            reason='%s must be an integer, not %s' % (what, _type_of(value)))
    if not low <= value <= high:
        raise exception.InvalidInput(
            reason='%s=%d is outside [%d, %d]' % (what, value, low, high))
    return value


def check_count(what, value):
    """``value`` if it is a non-negative int (not a bool): a size, offset.

    No upper bound here: a count from the wire is bounded where it is used
    (a read is cut to what the chain holds, a chunk to ``MAX_READ``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(
            reason='%s must be an integer, not %s' % (what, _type_of(value)))
    if value < 0:
        raise exception.InvalidInput(
            reason='%s must not be negative, got %d' % (what, value))
    return value


def check_bool(what, value):
    """``value`` if it is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise exception.InvalidInput(
            reason='%s must be true or false, not %s' % (what,
                                                         _type_of(value)))
    return value
