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

"""Sphinx configuration of df-nats' release notes (``tox -e releasenotes``).

reno reads the notes in ``releasenotes/notes/`` from the git history of
the checkout (and the ones not committed yet), so a build needs a clone,
not a tarball.
"""

project = 'df-nats release notes'
copyright = 'df-nats developers'
extensions = ['reno.sphinxext']
master_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []


def _notes_are_read_anew(app, env, added, changed, removed):
    # reno's directive does not tell Sphinx which note files it read: read
    # every page that shows notes again at each build, so a note added
    # since the last build is shown.
    return [name for name in env.found_docs if name != 'index']


def setup(app):
    app.connect('env-get-outdated', _notes_are_read_anew)
