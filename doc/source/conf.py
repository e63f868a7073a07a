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

"""Sphinx configuration of the nova-consolelog documentation.

``oslo_config.sphinxext`` renders the ``[consolelog]`` options straight from
``nova_consolelog.conf.list_opts()`` (the same entry point the sample config
generator uses), so the option reference cannot drift from the code.
"""

extensions = [
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
]

# oslo_config.sphinxconfiggen: write the sample file at build time, from the
# same generator configuration as ``tox -e genconfig``.
config_generator_config_file = (
    '../../etc/oslo-config-generator/nova-consolelog.conf')
sample_config_basename = '_static/nova-consolelog'

# openstackdocstheme
openstackdocs_repo_name = 'openstack/nova-consolelog'
openstackdocs_use_storyboard = False
openstackdocs_auto_name = False
openstackdocs_bug_project = 'nova-consolelog'
openstackdocs_bug_tag = 'docs'

project = 'nova-consolelog'
copyright = 'nova-consolelog developers'
source_suffix = '.rst'
master_doc = 'index'
exclude_patterns = []
pygments_style = 'native'
add_module_names = False

html_theme = 'openstackdocs'
html_static_path = ['_static']
