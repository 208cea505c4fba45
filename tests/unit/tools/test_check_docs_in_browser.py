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

"""tools/check_docs_in_browser.py: what it reads of a rendered page.

Chromium itself runs in ``tox -e docs``; here the reading of its DOM, on
pages shaped as oslo.config's Sphinx extension renders options.
"""

import importlib.util
import pathlib

from oslo_config import cfg

ROOT = pathlib.Path(__file__).parents[3]
_SPEC = importlib.util.spec_from_file_location(
    'check_docs_in_browser', ROOT / 'tools' / 'check_docs_in_browser.py')
cdb = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cdb)

_ENTRY = '''
<dl class="oslo.config option">
<dt class="sig sig-object oslo.config" id="df_nats.%(name)s">
<span class="sig-name descname"><span class="pre">%(name)s</span></span></dt>
<dd><dl class="field-list simple">
<dt class="field-odd">Type</dt><dd class="field-odd"><p>string</p></dd>
</dl>
<p>%(help)s</p>
</dd></dl>
'''


def _page(*entries):
    parser = cdb._OptionEntries()
    parser.feed('<html><body>%s</body></html>' % ''.join(
        _ENTRY % {'name': name, 'help': help_text}
        for name, help_text in entries))
    return parser.entries


def _expected(**helps):
    return {'df_nats.' + name: cfg.StrOpt(name, help=text)
            for name, text in helps.items()}


def test_each_entry_keeps_its_own_text():
    entries = _page(('servers', 'Where NATS is.'),
                    ('user', 'Who we are.'))
    assert set(entries) == {'df_nats.servers', 'df_nats.user'}
    assert 'Where NATS is.' in entries['df_nats.servers']
    assert 'Who we are.' not in entries['df_nats.servers']
    assert 'string' in entries['df_nats.user']   # the nested field list


def test_all_shown():
    entries = _page(('servers', 'NATS server URLs (<code>nats://</code>)'))
    assert cdb._missing(entries, _expected(
        servers='NATS server URLs (``nats://``)')) == {}


def test_missing_entry_and_help_named():
    entries = _page(('servers', 'Something else.'))
    assert cdb._missing(entries, _expected(
        servers='NATS server URLs, comma separated, every node.',
        user='Who we are.')) == {
            'df_nats.servers': 'its help is not shown',
            'df_nats.user': 'no entry'}


def test_no_browser_is_a_skip_unless_required(tmp_path, monkeypatch,
                                              capsys):
    monkeypatch.setattr(cdb, '_chromium', lambda: None)
    monkeypatch.delenv('DF_NATS_REQUIRE_BROWSER', raising=False)
    assert cdb.main([str(tmp_path)]) == 0
    assert 'skipped' in capsys.readouterr().out
    monkeypatch.setenv('DF_NATS_REQUIRE_BROWSER', '1')
    assert cdb.main([str(tmp_path)]) == 1
    assert 'no Chromium' in capsys.readouterr().err
