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

"""What df-nats tells nats-py when it connects.

``[df_nats]`` options become ``nats.connect()`` arguments (servers,
timeouts, TLS, credentials, the client name shown by ``nats server report
connections``), and ``ReconnectPacer`` chooses the server and the wait of
each reconnect attempt. Nothing here holds a connection.
"""

import os
import random
import ssl
import sys
from typing import Dict, Optional

from df_nats.conf import options


def process_name() -> str:
    """The name of this process as Dragonflow reports it."""
    try:
        with open('/proc/self/comm') as comm:
            name = comm.read().strip()
    except OSError:
        name = ''
    argv0 = os.path.basename((getattr(sys, 'argv', None) or [''])[0])
    if argv0.startswith('-'):
        argv0 = ''  # "python -c ..."
    # Python services show up as "python3"; their script name says more.
    if (not name or name.startswith('python')) and argv0:
        name = argv0
    return name or 'python'


def _tls_context(conf) -> Optional[ssl.SSLContext]:
    # The system's CA bundle when no tls_ca_file is given.
    if not options.tls_wanted(conf):
        return None
    context = ssl.create_default_context(cafile=conf.tls_ca_file)
    if conf.tls_cert_file:
        context.load_cert_chain(conf.tls_cert_file, conf.tls_key_file)
    return context


class ReconnectPacer:
    """Picks the server for each reconnect attempt and the wait before it.

    nats-py calls it (on the loop thread) before every attempt with the
    servers still eligible, the configured and the discovered ones, each
    with its count of failed attempts since it last worked. The pacer
    tries the servers that failed least first, and among those not the one
    just lost; the first round goes at once, later rounds wait
    ``reconnect_time_wait`` doubling up to ``reconnect_time_wait_max``.
    Every attempt adds up to ``reconnect_jitter`` of random delay.
    """

    def __init__(self, wait: float, wait_max: float, jitter: float,
                 rng: Optional[random.Random] = None):
        self.wait = wait
        self.wait_max = max(wait_max, wait)
        self.jitter = jitter
        self.last_netloc: Optional[str] = None
        self._rng = rng or random.Random()

    def delay(self, failures: int) -> float:
        """Seconds before an attempt when every server failed that often."""
        if failures <= 0:
            base = 0.0
        else:
            base = min(self.wait * 2 ** min(failures - 1, 30), self.wait_max)
        return base + self._rng.uniform(0, self.jitter)

    def __call__(self, servers, server_info=None):
        fewest = min(srv.reconnects for srv in servers)
        candidates = [srv for srv in servers if srv.reconnects == fewest]
        others = [srv for srv in candidates
                  if srv.uri.netloc != self.last_netloc]
        return self._rng.choice(others or candidates), self.delay(fewest)


def connect_options(conf) -> Dict:
    """nats-py ``connect()`` keyword arguments from ``[df_nats]``."""
    kwargs = dict(
        servers=list(conf.servers),
        name=conf.client_name or 'df-nats:%s' % process_name(),
        connect_timeout=conf.connect_timeout,
        reconnect_time_wait=conf.reconnect_time_wait,
        max_reconnect_attempts=conf.max_reconnect_attempts,
        ping_interval=conf.ping_interval,
        max_outstanding_pings=conf.max_outstanding_pings,
        allow_reconnect=True,
        tls=_tls_context(conf),
        tls_hostname=conf.tls_hostname,
        tls_handshake_first=conf.tls_handshake_first,
    )
    if conf.user:
        kwargs.update(user=conf.user, password=conf.password)
    if conf.token:
        kwargs['token'] = conf.token
    if conf.nkey_seed_file:
        kwargs['nkeys_seed'] = conf.nkey_seed_file
    if conf.creds_file:
        kwargs['user_credentials'] = conf.creds_file
    return kwargs
