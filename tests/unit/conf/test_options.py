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

"""[df_nats] options: clear errors naming the option, no secrets shown."""

import pytest

from df_nats.conf import options
from df_nats import errors


def _set(conf, **values):
    for name, value in values.items():
        conf.config(group=options.GROUP, **{name: value})


def test_defaults_are_valid(conf):
    group = options.validate(conf.conf)
    assert group.servers == ['nats://127.0.0.1:4222']
    assert group.subject_prefix == 'dragonflow'


@pytest.mark.parametrize('servers,problem', [
    ([], 'at least one'),
    (['http://127.0.0.1:4222'], 'scheme'),
    (['nats://127.0.0.1'], 'no port'),
    (['nats://:4222'], 'no host'),
    (['127.0.0.1:4222'], 'scheme'),
])
def test_bad_servers_name_the_option(conf, servers, problem):
    _set(conf, servers=servers)
    with pytest.raises(errors.ConfigError, match=problem) as err:
        options.validate(conf.conf)
    assert err.value.option == 'servers'
    assert str(err.value).startswith('[df_nats] servers:')


def test_password_in_url_never_shown(conf):
    _set(conf, servers=['http://admin:s3cret@127.0.0.1:4222'])
    with pytest.raises(errors.ConfigError) as err:
        options.validate(conf.conf)
    assert 's3cret' not in str(err.value) and 'admin' not in str(err.value)
    assert options.redact_url('nats://u:p@h:1') == 'nats://***@h:1'


@pytest.mark.parametrize('prefix', ['', 'a..b', 'a.*', 'a b', 'x.>'])
def test_bad_prefix(conf, prefix):
    _set(conf, subject_prefix=prefix)
    with pytest.raises(errors.ConfigError, match='subject_prefix'):
        options.validate(conf.conf)


def test_unreadable_files(conf, tmp_path):
    _set(conf, creds_file=str(tmp_path / 'missing.creds'))
    with pytest.raises(errors.ConfigError, match='creds_file'):
        options.validate(conf.conf)


def test_one_auth_method(conf, tmp_path):
    seed = tmp_path / 'seed'
    seed.write_text('SU...')
    _set(conf, token='t0ken', nkey_seed_file=str(seed))
    with pytest.raises(errors.ConfigError, match='only one') as err:
        options.validate(conf.conf)
    assert 't0ken' not in str(err.value)


def test_password_needs_user(conf):
    _set(conf, password='pw')
    with pytest.raises(errors.ConfigError, match='user'):
        options.validate(conf.conf)


def test_cert_needs_key(conf, tmp_path):
    cert = tmp_path / 'c.pem'
    cert.write_text('x')
    _set(conf, tls_cert_file=str(cert))
    with pytest.raises(errors.ConfigError, match='tls_key_file'):
        options.validate(conf.conf)


def test_list_opts_for_the_config_generator():
    [(group, opts)] = options.list_opts()
    assert group == 'df_nats'
    assert all(opt.help for opt in opts)
    # servers too: a URL refused for holding a password must not be
    # logged with it (issue 19, item 7).
    assert {o.name for o in opts if o.secret} == {'password', 'token',
                                                  'servers'}


def test_logged_option_values_hold_no_password_of_a_servers_url(conf):
    import logging

    class _Lines(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())
    lines = _Lines()
    logger = logging.getLogger('df_nats.test.log_opt_values')
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    conf.config(group=options.GROUP,
                servers=['nats://admin:hunter2@127.0.0.1:4222'])
    conf.conf.log_opt_values(logger, logging.DEBUG)
    [line] = [text for text in lines.lines if 'df_nats.servers' in text]
    assert 'hunter2' not in '\n'.join(lines.lines)
    assert line.endswith('****'), line
    # The refusal at start names the URL without its credentials.
    with pytest.raises(errors.ConfigError) as err:
        options.validate(conf.conf)
    assert 'hunter2' not in str(err.value) and 'admin' not in str(err.value)
    assert '***@127.0.0.1:4222' in str(err.value)


@pytest.mark.parametrize('prefix', [
    '', '_INBOX.*', '_INBOX.>', 'a..b', 'a b', '$$SRV', '$$KV.df', '$SRV',
    'dragonflow', 'dragonflow.topic', '_INBOX.', '>',
])
def test_service_inbox_prefix_is_inboxes_only(conf, prefix):
    _set(conf, service_inbox_prefix=prefix)
    with pytest.raises(errors.ConfigError) as err:
        options.validate(conf.conf)
    assert err.value.option == 'service_inbox_prefix'


@pytest.mark.parametrize('prefix', ['_INBOX', '_INBOX_ops', 'ops.inbox',
                                    'dragonflow2'])
def test_service_inbox_prefix_accepted(conf, prefix):
    _set(conf, service_inbox_prefix=prefix)
    assert options.validate(conf.conf).service_inbox_prefix == prefix


@pytest.mark.parametrize('values, option', [
    (dict(registry_bucket='df.publishers'), 'registry_bucket'),
    (dict(registry_bucket=''), 'registry_bucket'),
    (dict(role='two words'), 'role'),
    (dict(heartbeat_interval=6.0, publisher_ttl=10.0), 'heartbeat_interval'),
    (dict(registry_max_bytes=1000), 'registry_max_bytes'),
    (dict(registry_max_bytes=2 ** 31), 'registry_max_bytes'),
    (dict(registry_max_record_size=100), 'registry_max_record_size'),
    (dict(registry_max_record_size=2 ** 21), 'registry_max_record_size'),
    (dict(registry_max_records=1), 'registry_max_records'),
    (dict(registry_max_bytes=1 << 20, registry_max_record_size=1 << 20),
     None),
])
def test_bad_registry_options_are_named(conf, values, option):
    _set(conf, **values)
    if option is None:
        options.validate(conf.conf)   # at the bounds: fine
        return
    with pytest.raises(errors.ConfigError) as err:
        options.validate(conf.conf)
    assert err.value.option == option
    assert str(err.value).startswith('[df_nats] %s: ' % option)


def test_registry_limits_default_to_thousands_of_hosts(conf):
    group = options.validate(conf.conf)
    # 20,000 records (5,000 hosts, 4 processes each) of 450 bytes with
    # their keys fit 7 times; 15,000 of the largest records fit.
    assert 20000 * 450 * 7 <= group.registry_max_bytes
    assert group.registry_max_bytes // (group.registry_max_record_size
                                        + 100) >= 15000
    assert group.registry_max_records >= 1.5 * 20000


def test_default_registry_notices_a_death_within_15_s(conf):
    group = options.validate(conf.conf)
    # Expiry comes publisher_ttl after the last refresh at the latest.
    assert group.publisher_ttl + 2 <= 15
    assert group.heartbeat_interval <= group.publisher_ttl / 2


def test_listener_queue_group_on_by_default(conf):
    group = options.validate(conf.conf)
    assert group.listener_queue_group is True
    [(_, opts)] = options.list_opts()
    [opt] = [o for o in opts if o.name == 'listener_queue_group']
    assert 'queue group' in opt.help and 'listener_<host>' in opt.help
    # Port status is sent only with Dragonflow's neutron notifier on.
    assert 'enable_neutron_notifier = True, off by default' in ' '.join(
        opt.help.split())
    conf.config(group=options.GROUP, listener_queue_group=False)
    assert options.validate(conf.conf).listener_queue_group is False


@pytest.mark.parametrize('url', ['nats://df:s3cret@127.0.0.1:4222',
                                 'tls://s3cret@127.0.0.1:4222',
                                 'nats://df:@127.0.0.1:4222'])
def test_credentials_in_servers_refused(conf, url):
    _set(conf, servers=['nats://127.0.0.1:4223', url])
    with pytest.raises(errors.ConfigError, match='user and password, or'
                       ' token, not in the URL') as err:
        options.validate(conf.conf)
    assert err.value.option == 'servers'
    assert 's3cret' not in str(err.value) and 'df:' not in str(err.value)


@pytest.mark.parametrize('values, wanted', [
    ({}, False),
    ({'servers': ['tls://127.0.0.1:4222']}, True),
    ({'tls_hostname': 'nats.example.net'}, True),
    ({'tls_handshake_first': True}, True),
])
def test_tls_wanted(conf, values, wanted):
    _set(conf, **values)
    assert options.tls_wanted(conf.conf[options.GROUP]) is wanted


_SEED = 'SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU'
_CREDS = ('-----BEGIN NATS USER JWT-----\neyJhbGciOi.e30.c2ln\n'
          '------END NATS USER JWT------\n\n'
          '-----BEGIN USER NKEY SEED-----\n%s\n'
          '------END USER NKEY SEED------\n' % _SEED)


def _secret(tmp_path, name, text, mode=0o600):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize('option, text, problem', [
    ('creds_file', _SEED + '\n', 'goes in \\[df_nats\\] nkey_seed_file'),
    ('creds_file', 'hello\n', 'not a NATS credentials file'),
    ('nkey_seed_file', _CREDS, 'goes in \\[df_nats\\] creds_file'),
    ('nkey_seed_file', 'SU-not-a-seed\n', 'holds no NKey user seed'),
])
def test_credential_file_of_the_wrong_kind(conf, tmp_path, option, text,
                                           problem):
    _set(conf, **{option: _secret(tmp_path, 'secret', text)})
    with pytest.raises(errors.ConfigError, match=problem) as err:
        options.validate(conf.conf)
    assert err.value.option == option
    assert _SEED not in str(err.value)


def test_credential_files_of_the_right_kind(conf, tmp_path):
    _set(conf, creds_file=_secret(tmp_path, 'u.creds', _CREDS))
    options.validate(conf.conf)
    _set(conf, creds_file=None,
         nkey_seed_file=_secret(tmp_path, 'u.nk', _SEED + '\n'))
    options.validate(conf.conf)


def test_group_readable_secret_warned(conf, tmp_path, caplog):
    _set(conf, nkey_seed_file=_secret(tmp_path, 'u.nk', _SEED + '\n',
                                      mode=0o644))
    options.validate(conf.conf)
    assert 'readable by its group or by others (mode 644)' in caplog.text
    assert _SEED not in caplog.text


@pytest.mark.parametrize('values, option', [
    (dict(resync_interval=-1.0), 'resync_interval'),
    (dict(resync_interval=601.0), 'resync_interval'),
    (dict(delivery_queue_size=1000), 'delivery_queue_size'),
    (dict(delivery_queue_size=-1), 'delivery_queue_size'),
])
def test_bad_subscriber_bounds_are_named(conf, values, option):
    _set(conf, **values)
    with pytest.raises(errors.ConfigError) as err:
        options.validate(conf.conf)
    assert err.value.option == option
    assert str(err.value).startswith('[df_nats] %s: ' % option)


def test_subscriber_bounds_by_default(conf):
    group = options.validate(conf.conf)
    assert 0 < group.resync_interval <= 10
    assert group.delivery_queue_size == 64 * 1024 * 1024
    _set(conf, resync_interval=0.0)
    assert options.validate(conf.conf).resync_interval == 0.0


def test_help_paragraphs_are_folded_to_one_line():
    assert options._text('''
        Seconds between two
        things, from 0 to %d.''', 600) == (
            'Seconds between two things, from 0 to 600.')
    for opt in options.ALL_OPTS:
        assert opt.help == ' '.join(opt.help.split()), opt.name
