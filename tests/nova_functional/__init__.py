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

"""Tests through the real nova API, on nova's own functional harness.

They need nova's test environment (``tox -e nova-functional``, which
installs nova-functional-requirements.txt) and are not run by ``py3``.
"""

# nova's functional tests must import this first: it applies nova's
# monkey patching (eventlet, or native threads with
# OS_NOVA_DISABLE_EVENTLET_PATCHING=True, which refuses an eventlet
# imported earlier). A package import runs before any test module's.
import nova.tests.functional  # noqa: F401,E402
