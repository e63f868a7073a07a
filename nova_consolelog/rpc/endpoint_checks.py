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

"""What the console-log endpoint checks of every call before it acts.

Everything a caller sends is untrusted: the arguments of each call are
checked here (with ``names``, the one validation module) before the
endpoint opens a file, takes a lock or publishes a byte. Bad input raises
a typed error from ``nova_consolelog.exception``, which oslo.messaging
sends back to the caller as that class (``rpc``: expected exceptions).

Why a module of its own: these checks are the endpoint's security
boundary; a reviewer reads them in one place, apart from what the calls
serve (``rpc.served``) and the calls themselves (``rpc.manager``).
"""

import functools
import inspect

import oslo_messaging

from nova_consolelog import exception
from nova_consolelog import names
from nova_consolelog.objects import fields as cl_fields
from nova_consolelog.rpc import bulk as cl_bulk

# Hard upper bound of one read, whatever the configuration: the largest
# ``chunk_size`` allowed. Within it a read is cut to this host's chunk_size.
MAX_READ = 8 * 1024 * 1024
# Hard upper bound of one bulk window (the largest ``bulk_window``).
MAX_WINDOW = 64 * 1024 * 1024
# Most files a release may name (a chain has far fewer).
MAX_RELEASE_FILES = 4096

_expected = oslo_messaging.expected_exceptions(exception.ConsoleLogError)


def rpc(method):
    """An RPC method: dispatched (explicit access policy), typed errors.

    Arguments that do not fit the method (unknown, missing) are the
    caller's error, InvalidInput, not a TypeError from deep inside.
    """
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(self, ctxt, *args, **kwargs):
        try:
            signature.bind(self, ctxt, *args, **kwargs)
        except TypeError as e:
            raise invalid(str(e)[:200]) from None
        return method(self, ctxt, *args, **kwargs)
    return oslo_messaging.expose(_expected(checked))


def invalid(reason):
    return exception.InvalidInput(reason=reason)


def check_stash_id(stash_id, required=False):
    """A stash id, or None where the call allows none (the live chain)."""
    if stash_id is None and not required:
        return None
    return names.check_stash_id(stash_id)


def check_describe(instance_uuid, stash_id, checksums, tail_bytes):
    """The arguments of ``describe_console_log`` (and of a listing)."""
    names.check_instance_uuid(instance_uuid)
    check_stash_id(stash_id)
    names.check_bool('checksums', checksums)
    names.check_int('tail_bytes', tail_bytes, 0, MAX_READ)


def check_read(instance_uuid, stash_id, name, offset, length, compression,
               max_length):
    """The arguments of a chunk read or a bulk window."""
    names.check_instance_uuid(instance_uuid)
    check_stash_id(stash_id)
    if not isinstance(name, str) or len(name) > 64:
        raise invalid('name must be a file name')
    names.check_int('offset', offset, 0, 2 ** 63 - 1)
    names.check_int('length', length, 1, max_length)
    if compression is not None and (
            compression not in cl_fields.Compression.ALL):
        raise invalid('unknown compression %.40r' % (compression,))


def check_range(instance_uuid, stash_id, name, offset, length, reply_queue,
                compression, request_token):
    """The arguments of ``send_console_log_range`` (RPC 1.2, 1.3)."""
    check_read(instance_uuid, stash_id, name, offset, length, compression,
               MAX_WINDOW)
    if compression is None:
        raise invalid('compression is required')
    if request_token is not None:
        names.check_token(request_token)
    cl_bulk.check_queue_name(reply_queue)


def check_open(instance_uuid, stash_id, puller_host):
    """The arguments of ``open_console_log_transfer``."""
    names.check_instance_uuid(instance_uuid)
    check_stash_id(stash_id)
    names.check_host_name(puller_host)


def check_release(instance_uuid, stash_id, sha256s, transfer_token,
                  puller_host):
    """The arguments of ``release_console_log_stash``.

    A release without a token (callers of 1.0 to 1.2) is refused
    (HandoverRefused): such a stash expires after ``stash_expiry``.
    """
    names.check_instance_uuid(instance_uuid)
    check_stash_id(stash_id, required=True)
    if not isinstance(sha256s, dict) or (
            len(sha256s) > MAX_RELEASE_FILES) or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in sha256s.items()):
        raise invalid('sha256s must map file names to hex digests')
    if transfer_token is None:
        raise exception.HandoverRefused(
            stash_id=stash_id, instance=instance_uuid,
            reason='a release needs the token of a transfer (RPC 1.3)')
    names.check_token(transfer_token)
    names.check_host_name(puller_host)
