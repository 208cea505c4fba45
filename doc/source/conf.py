#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Sphinx configuration of the df-nats documentation (``tox -e docs``).

The configuration reference and the sample are generated from the option
definitions (oslo.config's Sphinx extensions, so df-nats must be
installed), the benchmark tables from ``benchmarks/results`` and the
command reference from the ``df-nats`` command (``_exts/df_nats_docs.py``).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(HERE, '_exts'))
# benchmarks.bench_report, for the benchmark tables.
sys.path.insert(0, ROOT)

from df_nats import version as df_nats_version  # noqa: E402

project = 'df-nats'
copyright = 'df-nats developers'
release = df_nats_version.version_string()
version = release

extensions = [
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
    'df_nats_docs',
]

# oslo_config.sphinxconfiggen: the sample, generated at every build into
# _static/df_nats.conf.sample (not kept in git) and included by
# configuration.rst.
config_generator_config_file = os.path.join(
    ROOT, 'etc', 'oslo-config-generator', 'df_nats.conf')
sample_config_basename = '_static/df_nats'

master_doc = 'index'
exclude_patterns = ['_build']
pygments_style = 'sphinx'
# Plain '::' blocks are shown as they are; code-block names a language.
highlight_language = 'none'
html_theme = 'alabaster'
html_theme_options = {
    'description': 'NATS pub/sub driver for OpenStack Dragonflow',
    'fixed_sidebar': True,
    'page_width': '1100px',
    'sidebar_width': '240px',
}
html_static_path = ['_static']
html_css_files = ['df-nats.css']
html_title = 'df-nats %s' % release
