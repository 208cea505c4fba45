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


"""What the commands read by default: files, NATS_URL, time limits."""

import argparse
import io

from oslo_config import cfg
from oslo_config import fixture as cfg_fixture
import pytest

from df_nats.cmd import common
from df_nats.conf import options
from df_nats import errors


@pytest.fixture
def global_conf():
    fixture = cfg_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield cfg.CONF
    fixture.cleanUp()
    cfg.CONF.reset()


def _args(**values):
    args = dict(servers=None, config_file=None, debug=False, verbose=True,
                timeout=None)
    args.update(values)
    return argparse.Namespace(**args)


def test_default_files_are_those_that_exist(tmp_path, monkeypatch):
    neutron = tmp_path / 'neutron.conf'
    neutron.write_text('[df_nats]\n')
    monkeypatch.setattr(common, 'DEFAULT_CONFIG_FILES', (
        str(neutron), str(tmp_path / 'dragonflow.ini')))
    assert common.config_files(None) == [str(neutron)]
    assert common.config_files(['/x.conf']) == ['/x.conf']


def test_defaults_read_and_said_with_verbose(tmp_path, monkeypatch,
                                             global_conf):
    neutron = tmp_path / 'neutron.conf'
    neutron.write_text('[df_nats]\nservers = nats://10.0.0.7:4222\n')
    dragonflow = tmp_path / 'dragonflow.ini'
    dragonflow.write_text('[df_nats]\nsubject_prefix = df2\n')
    monkeypatch.setattr(common, 'DEFAULT_CONFIG_FILES', (
        str(neutron), str(dragonflow)))
    err = io.StringIO()
    files = common.setup_command(_args(timeout=3.0), err, environ={
        'NATS_URL': 'nats://u:hunter2@10.9.9.9:4222'})
    assert files == [str(neutron), str(dragonflow)]
    conf = global_conf[options.GROUP]
    # The configuration's servers win over NATS_URL.
    assert conf.servers == ['nats://10.0.0.7:4222']
    assert conf.subject_prefix == 'df2'
    assert conf.initial_connect_wait == 3.0
    assert conf.connect_timeout == 2.0
    text = err.getvalue()
    assert ('configuration files read (default): %s, %s'
            % (neutron, dragonflow)) in text
    assert 'servers from configuration: nats://10.0.0.7:4222' in text


def test_nats_url_when_nothing_else_says_where(monkeypatch, global_conf):
    monkeypatch.setattr(common, 'DEFAULT_CONFIG_FILES', ())
    err = io.StringIO()
    common.setup_command(_args(), err, environ={
        'NATS_URL': 'nats://ops:hunter2@10.0.0.8:4222, tls://10.0.0.9:4443'})
    conf = global_conf[options.GROUP]
    assert conf.servers == ['nats://10.0.0.8:4222', 'tls://10.0.0.9:4443']
    assert (conf.user, conf.password) == ('ops', 'hunter2')
    options.validate(global_conf)   # no credentials left in a URL
    assert 'hunter2' not in err.getvalue()
    assert 'servers from the environment variable NATS_URL:' in (
        err.getvalue())


def test_servers_flag_wins_over_nats_url(monkeypatch, global_conf):
    monkeypatch.setattr(common, 'DEFAULT_CONFIG_FILES', ())
    common.setup_command(_args(servers=['nats://10.0.0.1:1']),
                         io.StringIO(),
                         environ={'NATS_URL': 'nats://t0ken@10.0.0.2:2'})
    conf = global_conf[options.GROUP]
    assert conf.servers == ['nats://10.0.0.1:1'] and conf.token is None


@pytest.mark.parametrize('value, servers, credentials', [
    ('10.0.0.1:4222', ['nats://10.0.0.1:4222'], {}),
    ('nats://s3cret-token@h:1', ['nats://h:1'], {'token': 's3cret-token'}),
    ('nats://a:b%40c@h:1,nats://h2:2', ['nats://h:1', 'nats://h2:2'],
     {'user': 'a', 'password': 'b@c'}),
])
def test_nats_url_values(value, servers, credentials):
    assert common.nats_url_settings(value) == (servers, credentials)


@pytest.mark.parametrize('value', ['nats://u:p@', 'nats://u:p@h:x'])
def test_a_bad_nats_url_is_refused_without_its_value(value):
    with pytest.raises(errors.ConfigError) as raised:
        common.nats_url_settings(value)
    assert 'NATS_URL' in str(raised.value)
    assert 'u:p' not in str(raised.value)
