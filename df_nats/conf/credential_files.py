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

"""The credentials and TLS files an operator names: present, readable, of
the right kind, not readable by others.

nats-py reads these files only when it connects, where a file of the
wrong kind fails with an unrelated error; checked here, at start, a bad
one fails naming its option. The files' content is never quoted.
"""

import os
import re
import stat

from df_nats import errors
from df_nats.loop import log

LOG = log.get_logger(__name__)

# What a NATS credentials file holds, and an NKey user seed.
_CREDS_JWT = '-----BEGIN NATS USER JWT-----'
_CREDS_SEED = '-----BEGIN USER NKEY SEED-----'
_USER_SEED = re.compile(r'SU[A-Z2-7]{56}')


def check(conf, group):
    """Check the files and credentials options; ``ConfigError`` naming the
    option if they cannot work. ``group``: the options' group, for
    messages.
    """
    for name in ('nkey_seed_file', 'creds_file', 'tls_ca_file',
                 'tls_cert_file', 'tls_key_file'):
        path = conf[name]
        if path and not os.access(path, os.R_OK):
            raise errors.ConfigError(name, '%s is not a readable file' % path)
    if bool(conf.tls_cert_file) != bool(conf.tls_key_file):
        raise errors.ConfigError('tls_key_file' if conf.tls_cert_file
                                 else 'tls_cert_file',
                                 'tls_cert_file and tls_key_file go together')
    if conf.password and not conf.user:
        raise errors.ConfigError('user', 'a password is set but no user')
    methods = [n for n in ('token', 'nkey_seed_file', 'creds_file')
               if conf[n]] + (['user'] if conf.user else [])
    if len(methods) > 1:
        raise errors.ConfigError(
            methods[1], 'only one authentication method may be set,'
            ' found: %s' % ', '.join(methods))
    _check_credential_files(conf, group)


def _read_secret_file(name, path) -> str:
    try:
        with open(path, 'rb') as secret:
            return secret.read(64 * 1024).decode('ascii', 'replace')
    except OSError as exc:
        raise errors.ConfigError(name, '%s cannot be read (%s)' % (
            path, exc.strerror)) from None


def _warn_if_readable_by_others(group, name, path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        LOG.warning('df-nats: [%s] %s: %s holds a secret but is readable by'
                    ' its group or by others (mode %03o); chmod 600 it',
                    group, name, path, stat.S_IMODE(mode))


def _check_credential_files(conf, group):
    """Format and modes of the NKey seed and credentials files.

    nats-py reads them only when it connects, and a file of the wrong
    kind then fails with a TypeError; here it fails at start, naming the
    option. Never quotes the files' content.
    """
    if conf.creds_file:
        text = _read_secret_file('creds_file', conf.creds_file)
        if _CREDS_JWT not in text or _CREDS_SEED not in text:
            hint = (' it holds an NKey seed: that goes in'
                    ' [%s] nkey_seed_file' % group
                    if _USER_SEED.search(text) else '')
            raise errors.ConfigError(
                'creds_file', '%s is not a NATS credentials file (a user'
                ' JWT and an NKey seed between -----BEGIN ...----- lines);'
                '%s' % (conf.creds_file, hint or ' see "nsc generate'
                        ' creds"'))
        _warn_if_readable_by_others(group, 'creds_file', conf.creds_file)
    if conf.nkey_seed_file:
        text = _read_secret_file('nkey_seed_file', conf.nkey_seed_file)
        if _CREDS_JWT in text:
            raise errors.ConfigError(
                'nkey_seed_file', '%s is a credentials file (JWT and seed):'
                ' that goes in [%s] creds_file' % (conf.nkey_seed_file,
                                                   group))
        if not _USER_SEED.search(text):
            raise errors.ConfigError(
                'nkey_seed_file', '%s holds no NKey user seed (a line of 58'
                ' characters starting with SU)' % conf.nkey_seed_file)
        _warn_if_readable_by_others(group, 'nkey_seed_file',
                                    conf.nkey_seed_file)
    if conf.tls_key_file:
        _warn_if_readable_by_others(group, 'tls_key_file', conf.tls_key_file)
