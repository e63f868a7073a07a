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

"""The one guard between nova and console-log handling.

A failure of console-log handling never fails a live migration, a resize,
a reboot or any other operation of nova's. Every step nova's driver calls
(``migration.ConsoleLogMigration``) is wrapped here, and only here: an
error is logged once, as a warning, and the step returns its ``default``.
What was not finished stays on disk (the hand-over record, the stash, a
staging file) where the periodic task or a retry finds it. Nothing below
the steps catches errors for nova's sake; nothing above them needs to.
"""

import functools

from oslo_log import log as logging

from nova_consolelog import exception

LOG = logging.getLogger(__name__)


def never_raises(default=None):
    """Decorate a step: skipped when disabled, never raising into nova.

    ``default`` is returned when the step is skipped or fails; a callable
    is called for a fresh value. The step's first argument, when there is
    one, names the instance in the warning.
    """
    def decorate(step):
        @functools.wraps(step)
        def wrapper(self, *args, **kwargs):
            fallback = default() if callable(default) else default
            if not self.enabled:
                return fallback
            try:
                return step(self, *args, **kwargs)
            except Exception as e:
                instance = args[0] if args else kwargs.get(
                    'instance_uuid', '(all)')
                LOG.warning('Console-log migration step %s failed for '
                            'instance %s; the live migration goes on and '
                            'the console log stays where a retry can find '
                            'it: %s',
                            step.__name__, instance, e,
                            exc_info=not isinstance(
                                e, exception.ConsoleLogError))
                return fallback
        return wrapper
    return decorate
