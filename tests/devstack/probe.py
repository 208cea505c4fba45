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

"""What a Dragonflow service would read at its start, for the harness.

``probe.py OUT COMMAND...``: COMMAND is a unit's ExecStart (df-controller's
or neutron-server's). The ``--config-file`` arguments are parsed with
oslo.config in the same order as the service would parse them, with
Dragonflow's pub/sub options and df-nats' ``[df_nats]`` options registered;
``[df_nats]`` goes through df-nats' own validation. Each server URL is
then asked for the NATS greeting (a TCP connection that must answer
``INFO {...}``). The result goes to OUT as JSON, with the text of the
files.
"""

import json
import socket
import sys
from urllib import parse

from oslo_config import cfg

from df_nats.conf import options
from df_nats import errors

# Dragonflow's [df] options that select pub/sub (4.0.0 and master).
_DF_OPTS = [
    cfg.BoolOpt('enable_df_pub_sub', default=False),
    cfg.StrOpt('pub_sub_driver', default='zmq_pubsub_driver'),
    cfg.BoolOpt('pub_sub_use_multiproc', default=True),
    cfg.StrOpt('pub_sub_multiproc_driver',
               default='zmq_pubsub_multiproc_driver'),
]


def _greeting(url, timeout=3.0):
    """The server's INFO as a dict, or the error as a string."""
    parts = parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port),
                                      timeout=timeout) as sock:
            line = sock.makefile('rb').readline(65536).decode()
    except OSError as exc:
        return 'unreachable: %s' % exc
    if not line.startswith('INFO '):
        return 'not a NATS server: %r' % line[:40]
    return json.loads(line[len('INFO '):])


def probe(command):
    files = [command[i + 1] for i, arg in enumerate(command)
             if arg == '--config-file']
    conf = cfg.ConfigOpts()
    conf.register_opts(_DF_OPTS, group='df')
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    conf(args=['--config-file=%s' % f for f in files], project='probe',
         default_config_files=[], default_config_dirs=[])
    result = {
        'config_files': files,
        'text': {f: open(f).read() for f in files},
        'df': {o.dest: conf.df[o.dest] for o in _DF_OPTS},
    }
    try:
        nats = options.validate(conf)
    except (errors.ConfigError, cfg.Error) as exc:
        result['df_nats_error'] = str(exc)
        return result
    result['df_nats'] = {'servers': list(nats.servers),
                         'subject_prefix': nats.subject_prefix,
                         'kv_replicas': nats.kv_replicas}
    result['greetings'] = {url: _greeting(url) for url in nats.servers}
    return result


def main(argv):
    out, command = argv[0], argv[1:]
    with open(out, 'w') as f:
        json.dump(probe(command), f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main(sys.argv[1:])
