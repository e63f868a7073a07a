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

"""nova-consolelog's compute driver, where nova looks for it.

nova loads a compute driver only as ``nova.virt.<compute_driver>``; set
``[DEFAULT] compute_driver = consolelog.LibvirtDriver``. The driver lives
in ``nova_consolelog.nova_driver``; this package only re-exports it and
ships no ``nova/__init__.py`` or ``nova/virt/__init__.py`` of its own.
"""

from nova_consolelog.nova_driver import LibvirtDriver

__all__ = ['LibvirtDriver']
