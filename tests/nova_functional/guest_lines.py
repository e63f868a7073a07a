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

"""Numbered console lines, and the text nova serves for them.

A line names the host it was written on, so that a console read shows
where every part of the history came from. The live-migration and
peer-support tests use these; no tests here.
"""


def lines(prefix, count):
    return [b'%s %04d' % (prefix.encode(), i) for i in range(count)]


def text(*groups):
    return b''.join(line + b'\n' for group in groups
                    for line in group).decode()
