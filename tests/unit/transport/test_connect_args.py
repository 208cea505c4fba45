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

"""Reconnect pacing: server choice, backoff and jitter."""

import asyncio
import random
import socket
import subprocess
import sys
import time
from urllib import parse

import nats
from nats.aio import client as nats_client
from nats import errors as nats_errors
import pytest

from df_nats.conf import options
from df_nats import errors
from df_nats.transport import connect_args


def _servers(*reconnects):
    return [nats_client.Server(uri=parse.urlparse('nats://127.0.0.1:%d'
                                                  % (4222 + i)),
                               reconnects=r)
            for i, r in enumerate(reconnects)]


def _pacer(wait=1.0, wait_max=10.0, jitter=0.0, seed=1):
    return connect_args.ReconnectPacer(wait, wait_max, jitter,
                                       rng=random.Random(seed))


def test_first_round_at_once_and_not_the_lost_server():
    pacer = _pacer()
    servers = _servers(0, 0, 0)
    pacer.last_netloc = servers[1].uri.netloc
    for seed in range(20):
        pacer._rng = random.Random(seed)
        chosen, delay = pacer(servers, {})
        assert chosen is not servers[1]
        assert delay == 0.0


def test_least_failed_server_first():
    pacer = _pacer()
    servers = _servers(2, 1, 3)
    chosen, delay = pacer(servers, {})
    assert chosen is servers[1]
    assert delay == 1.0


def test_lost_server_when_it_is_the_only_candidate():
    pacer = _pacer()
    servers = _servers(1, 0, 1)
    pacer.last_netloc = servers[1].uri.netloc
    assert pacer(servers, {})[0] is servers[1]


def test_backoff_doubles_up_to_the_cap():
    pacer = _pacer(wait=0.5, wait_max=3.0)
    assert [pacer.delay(n) for n in range(6)] == [0, 0.5, 1.0, 2.0, 3.0,
                                                  3.0]
    assert pacer.delay(10 ** 6) == 3.0


def test_jitter_spreads_within_bound():
    pacer = _pacer(wait=1.0, wait_max=1.0, jitter=0.2)
    delays = [pacer.delay(1) for _ in range(200)]
    assert all(1.0 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 100
    first = [pacer.delay(0) for _ in range(200)]
    assert all(0.0 <= d <= 0.2 for d in first)


def test_reconnect_defaults(conf):
    group = options.validate(conf.conf)
    assert group.max_reconnect_attempts == -1   # forever
    assert group.reconnect_jitter > 0
    assert group.reconnect_time_wait_max >= group.reconnect_time_wait
    assert group.sequence_streams == 4096


def test_backoff_cap_below_base_is_named(conf):
    conf.config(group=options.GROUP, reconnect_time_wait=5.0,
                reconnect_time_wait_max=1.0)
    with pytest.raises(errors.ConfigError) as exc:
        options.validate(conf.conf)
    assert str(exc.value).startswith('[df_nats] reconnect_time_wait_max:')


def _help(name):
    return next(opt.help for opt in options.ALL_OPTS if opt.dest == name)


def test_reconnect_time_wait_help_states_the_pacers_backoff():
    """The help says what ReconnectPacer does: at once while a server has
    not failed, then this wait, doubling up to the cap, plus jitter.
    """
    text = ' '.join(_help('reconnect_time_wait').split())
    assert 'at once while one of them has not failed yet' in text
    assert 'doubling' in text and 'reconnect_time_wait_max' in text
    assert 'reconnect_jitter' in text
    pacer = _pacer(wait=1.0, wait_max=10.0)
    assert [pacer.delay(n) for n in (0, 1, 2, 3)] == [0.0, 1.0, 2.0, 4.0]


def _refused_url():
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return 'nats://127.0.0.1:%d' % port


def _attempts(conf, attempts, seconds):
    """Failed connects nats-py made with df-nats' arguments; gave up?"""
    conf.config(group=options.GROUP, servers=[_refused_url()],
                max_reconnect_attempts=attempts, reconnect_time_wait=0.01,
                connect_timeout=0.5)
    kwargs = connect_args.connect_options(options.validate(conf.conf))
    errors = []

    async def error_cb(exc):
        errors.append(exc)

    async def connect():
        try:
            nc = await asyncio.wait_for(
                nats.connect(error_cb=error_cb, **kwargs), seconds)
        except nats_errors.NoServersError:
            return True
        except asyncio.TimeoutError:
            return False
        await nc.close()
        raise AssertionError('connected to %s' % kwargs['servers'])

    return asyncio.run(connect()), len(errors)


def test_max_reconnect_attempts_tries_a_server_that_many_times_plus_one(
        conf):
    gave_up, failed = _attempts(conf, 2, 10.0)
    assert gave_up and failed == 3
    assert 'tried this many times plus one' in _help(
        'max_reconnect_attempts')


# Trying forever is watched from outside: nats-py's connect does not always
# give way to a cancellation while it is retrying (2.15 never, 2.16 under
# load), so a time limit inside the process could hang; the child is killed.
_FOREVER_CHILD = """
import asyncio, sys
from oslo_config import cfg
import nats
from df_nats.conf import options
from df_nats.transport import connect_args
conf = cfg.ConfigOpts()
conf.register_opts(options.ALL_OPTS, group=options.GROUP)
conf([])
conf.set_override('servers', [sys.argv[1]], options.GROUP)
conf.set_override('max_reconnect_attempts', int(sys.argv[2]), options.GROUP)
conf.set_override('reconnect_time_wait', 0.01, options.GROUP)
conf.set_override('connect_timeout', 0.5, options.GROUP)
kwargs = connect_args.connect_options(options.validate(conf))
async def error_cb(exc):
    print('failed', flush=True)
async def main():
    await nats.connect(error_cb=error_cb, **kwargs)
try:
    asyncio.run(main())
except Exception as exc:
    print('gave up: %s' % type(exc).__name__, flush=True)
"""


def _failures_before_kill(attempts, wanted, seconds=60.0):
    """Failed connects seen from a child until ``wanted`` or it ends."""
    child = subprocess.Popen(
        [sys.executable, '-c', _FOREVER_CHILD, _refused_url(),
         str(attempts)], stdout=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + seconds
    try:
        while len(lines) < wanted and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    return lines


@pytest.mark.parametrize('attempts', [0, -1])
def test_max_reconnect_attempts_0_and_minus_1_try_forever(attempts):
    lines = _failures_before_kill(attempts, wanted=6)
    assert lines == ['failed'] * 6, lines
    assert '-1 or 0 tries forever' in _help('max_reconnect_attempts')
