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

"""The one source of the stash directory's default."""

from oslotest import base

from nova_consolelog import conf as cl_conf

from tests import fixtures as test_fixtures


class StashPathTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(test_fixtures.ConfFixture(
            instances_path='/srv/nova/instances/')).conf

    def test_default_under_instances_path(self):
        self.assertEqual('/srv/nova/instances/.consolelog-stash',
                         cl_conf.stash_path(self.conf))
        self.assertEqual('/var/lib/nova/instances/.consolelog-stash',
                         cl_conf.stash_path(
                             self.conf,
                             instances_path='/var/lib/nova/instances'))

    def test_option_wins(self):
        self.conf.set_override('stash_path', '/srv/stash', 'consolelog')
        self.assertEqual('/srv/stash', cl_conf.stash_path(self.conf))
        self.assertEqual('/srv/stash', cl_conf.stash_path(
            self.conf, instances_path='/var/lib/nova/instances'))
