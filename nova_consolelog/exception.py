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

"""Typed errors of nova-consolelog.

Every error a caller can act on has its own class. The classes keep their
keyword arguments in ``self.kwargs`` and build their message from them, the
way nova's exceptions do, so oslo.messaging can rebuild them on the calling
side: this module is listed in ``allowed_remote_exmods`` and a remote caller
gets the same class, not a ``RemoteError`` string.
"""

from oslo_versionedobjects import exception as ovo_exception


# What an error may echo of its input. An error raised on the endpoint is
# serialised back to the caller with its message, its args and its kwargs:
# a 20 MiB instance id must not become a 20 MiB reply (and the copies made
# on the way), so every value kept and the message built from them are cut.
MAX_MESSAGE = 512
MAX_VALUE = 256
# Integers are kept as they are up to this many bits: str() of a larger
# one costs quadratic time (and raises past 4300 digits).
_MAX_INT_BITS = 256


def bounded(value, limit=MAX_VALUE):
    """``value`` cut to ``limit`` characters (or bytes), marked as cut.

    Why: error messages and the kwargs of errors echo input from the bus or
    the command line; this keeps what they echo to a few hundred bytes.
    Numbers, booleans and None are kept; any other object longer than
    ``limit`` when printed is replaced by its cut representation.
    """
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return value
        marker = '...(%d more)' % (len(value) - limit)
        if isinstance(value, bytes):
            marker = marker.encode('ascii')
        return value[:limit] + marker
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if value.bit_length() <= _MAX_INT_BITS:
            return value
        return '<integer of %d bits>' % value.bit_length()
    try:
        text = repr(value)
    except Exception:
        return '<unprintable %s>' % type(value).__name__
    return value if len(text) <= limit else bounded(text, limit)


class ConsoleLogError(Exception):
    """Base class of every nova-consolelog error.

    The message and every value in ``kwargs`` are bounded (``bounded``).
    oslo.messaging rebuilds the error on the calling side as
    ``cls(message, **kwargs)``: both are bounded again there, so a hostile
    reply cannot make a caller hold a huge error either.
    """

    msg_fmt = 'An unknown console-log error occurred.'

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs = {k: bounded(v) for k, v in kwargs.items()}
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A wrong keyword must not hide the error being reported.
                message = '%s (%s)' % (self.msg_fmt, kwargs)
        elif not isinstance(message, str):
            message = bounded(message, MAX_MESSAGE)
            message = str(message)
        self.message = message = bounded(message, MAX_MESSAGE)
        super().__init__(message)


class InvalidInput(ConsoleLogError, ValueError):
    msg_fmt = 'Invalid input: %(reason)s'


class ObjectVersionUnsupported(InvalidInput,
                               ovo_exception.IncompatibleObjectVersion):
    """An object primitive of a version this release cannot read.

    Input like any other malformed primitive (an InvalidInput, so callers
    and the CLI treat it as bad input), and still the IncompatibleObjectVersion
    oslo.versionedobjects' own callers expect.
    """


class InstanceDirNotFound(ConsoleLogError):
    msg_fmt = 'Instance directory %(path)s does not exist.'


class UnsafeChainFile(ConsoleLogError):
    """A chain file is a symlink, a directory or otherwise not a file."""

    msg_fmt = 'Refusing %(path)s: %(reason)s'


class ChainFileUnreadable(ConsoleLogError):
    msg_fmt = 'Cannot read %(path)s: %(reason)s'


class ChainFileNotFound(ConsoleLogError):
    msg_fmt = 'No console-log file %(name)s for instance %(instance)s.'


class StashNotFound(ConsoleLogError):
    msg_fmt = 'No console-log stash %(stash_id)s for instance %(instance)s.'


class InstallFailed(ConsoleLogError):
    msg_fmt = ('Console-log history for instance %(instance)s was not '
               'installed: %(reason)s')


class ChecksumMismatch(ConsoleLogError):
    msg_fmt = ('Checksum mismatch on %(name)s at offset %(offset)s: '
               'expected %(expected)s, got %(actual)s')


class PeerUnsupported(ConsoleLogError):
    """The peer host does not offer the console-log RPC we need."""

    msg_fmt = 'Host %(host)s does not support %(what)s.'


class TransferFailed(ConsoleLogError):
    msg_fmt = ('Console log of instance %(instance)s was not pulled from '
               '%(host)s: %(reason)s')


class StashFailed(ConsoleLogError):
    """A chain could not be moved into or out of a stash (undone)."""

    msg_fmt = ('Console log of instance %(instance)s was not moved: '
               '%(reason)s')


class BulkUnavailable(ConsoleLogError):
    """The binary bulk channel (RPC 1.2) cannot be used for this range.

    The puller fetches the range with chunk calls instead.
    """

    msg_fmt = 'Console-log bulk channel unavailable: %(reason)s'


class HandoverRefused(ConsoleLogError):
    """A transfer or release of a stash this caller may not have.

    The source hands a stash to one destination: a grant goes to that host
    only, and a release needs the token granted to it.
    """

    msg_fmt = ('Console-log stash %(stash_id)s of instance %(instance)s '
               'refused: %(reason)s')


class ImportInProgress(ConsoleLogError):
    """Another pull of the same source chain is installing it here."""

    msg_fmt = ('Console-log import %(import_id)s into %(directory)s is in '
               'progress elsewhere')


class ImportSlotBusy(ConsoleLogError):
    """Every import slot of the process is taken; the caller may not wait.

    Raised inside ``transfer.gate.no_wait()`` (an import run inside nova's
    own request): the caller defers the import.
    """

    msg_fmt = ('Console-log import of instance %(instance)s waits for a '
               'free import slot (max_concurrent_imports %(limit)s)')
