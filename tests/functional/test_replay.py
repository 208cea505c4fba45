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

"""Catch-up from the capture stream on a real nats-server, both worlds.

Node loss on a 3-node cluster is in test_failover.py; here a single
server: its restart, a stream that no longer holds what a catch-up
needs, an overflowing delivery queue, forged gaps; and the fetch itself
against the server's direct get.
"""

import asyncio
import json
import time

import nats
from oslo_config import cfg
import pytest

from df_nats.conf import options
from df_nats.transport import capture_stream
from df_nats.transport import replay_fetch
from df_nats.wire import sequence
from tests.functional import test_driver

WORLDS = ['eventlet', 'native']
STREAM = 'DF_NATS_EVENTS'


def _run(world, scenario, server, tmp_path, on_ask=None):
    proc = test_driver._start(world, scenario, [server.url], tmp_path,
                              module='replay_scenarios')
    if on_ask is not None:
        request = test_driver._answer(proc, on_ask[0])
        on_ask[1](request)
        proc.send('answer', answer='done')
    test_driver._finish(proc)


@pytest.mark.parametrize('world', WORLDS)
def test_restart_caught_up_without_resync(world, fresh_nats_server,
                                          tmp_path):
    def restart(_):
        fresh_nats_server.kill()
        fresh_nats_server.restart()
    _run(world, 'reconnect_caught_up', fresh_nats_server, tmp_path,
         ('restart-server', restart))


async def _api(url, subject, body=None):
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, json.dumps(body or {}).encode(),
                               timeout=5)
        return json.loads(msg.data)
    finally:
        await nc.close()


@pytest.mark.parametrize('world', WORLDS)
def test_window_passed_one_resync(world, fresh_nats_server, tmp_path):
    def purge_and_restart(_):
        answer = asyncio.run(_api(fresh_nats_server.url,
                                  '$JS.API.STREAM.PURGE.%s' % STREAM))
        assert answer.get('success'), answer
        fresh_nats_server.kill()
        fresh_nats_server.restart()
    _run(world, 'window_passed_one_sync', fresh_nats_server, tmp_path,
         ('purge-and-restart', purge_and_restart))


@pytest.mark.parametrize('world', WORLDS)
def test_overflow_caught_up(world, fresh_nats_server, tmp_path):
    _run(world, 'overflow_caught_up', fresh_nats_server, tmp_path)


async def _forge(url, subject, seq, count=300):
    """Send ``count`` messages on ``subject`` numbered ahead of the real
    ``Df-Seq`` value ``seq``, with bodies that are no events.
    """
    nc = await nats.connect(url)
    try:
        publisher, incarnation, n = sequence.parse_value(seq)
        for i in range(count):
            forged = n + 2 + 3 * i
            await nc.publish(subject, b'\xc1forged %d' % i, headers={
                sequence.HEADER_SEQ: sequence.seq_header(
                    incarnation, forged, publisher)})
        await nc.flush()
    finally:
        await nc.close()


@pytest.mark.parametrize('world', WORLDS)
def test_forged_gaps_bounded_catch_ups(world, fresh_nats_server, tmp_path):
    def forge(request):
        asyncio.run(_forge(fresh_nats_server.url, request[0],
                           ' '.join(request[1:])))
    _run(world, 'forged_gaps_bounded', fresh_nats_server, tmp_path,
         ('forge', forge))


# -- the fetch against the server ------------------------------------------

def _conf(**values):
    conf = cfg.ConfigOpts()
    conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    conf([])
    for name, value in values.items():
        conf.set_override(name, value, options.GROUP)
    return options.validate(conf)


def _headers(n):
    return {sequence.HEADER_SEQ: sequence.seq_header('inc', n, 'pub'),
            'Df-Events': '1 lport t=%d' % n}


async def _fill(nc, conf, subjects, count):
    assert await capture_stream.ensure_on_loop(nc, conf, 1, 5) in (
        capture_stream.CREATED, capture_stream.UPDATED,
        capture_stream.UNCHANGED)
    for i in range(count):
        await nc.publish(subjects[i % len(subjects)], b'event %d' % i,
                         headers=_headers(i + 1))
    await nc.flush()


def test_fetch_returns_what_was_published_as_published(fresh_nats_server):
    conf = _conf()
    subjects = ['dragonflow.topic.a', 'dragonflow.topic.b']

    async def check():
        nc = await nats.connect(fresh_nats_server.url)
        live = []

        async def on_live(msg):
            live.append(msg)
        await nc.subscribe('dragonflow.topic.a', cb=on_live)
        await _fill(nc, conf, subjects, 0)
        start = time.time_ns()
        # Over a page: the fetch pages on.
        await _fill(nc, conf, subjects, 2 * replay_fetch.PAGE + 10)
        await asyncio.sleep(0.3)
        got = await replay_fetch.fetch_on_loop(
            nc, STREAM, 'dragonflow', ['dragonflow.topic.a'], start,
            100000, 10 ** 8, 2.0)
        await nc.close()
        return live, got

    live, got = asyncio.run(check())
    assert got.outcome == replay_fetch.OK, got
    assert len(got.messages) == len(live) == replay_fetch.PAGE + 5
    for copy, original in zip(got.messages, live):
        assert copy.subject == original.subject
        assert copy.headers == original.headers
        assert sequence.digest(copy.headers, copy.data) == (
            sequence.digest(original.headers, original.data))
    # A later fetch goes on after the last message read (topic b's last
    # one, 2 * PAGE + 10, is not among the subjects fetched).
    assert got.last_seq == got.messages[-1].seq == 2 * replay_fetch.PAGE + 9


def test_fetch_says_why_replay_cannot_do(fresh_nats_server,
                                         nats_server_no_js):
    conf = _conf()
    subjects = ['dragonflow.topic.a']

    async def check():
        nc = await nats.connect(fresh_nats_server.url)
        await _fill(nc, conf, subjects, 0)
        start = time.time_ns()
        await _fill(nc, conf, subjects, 300)

        def fetch(since, **limits):
            return replay_fetch.fetch_on_loop(
                nc, STREAM, 'dragonflow', subjects, since,
                limits.get('events', 100000), limits.get('size', 10 ** 8),
                2.0)
        outcomes = {
            'created after': (await fetch(start - 10 ** 9)).outcome,
            'events': (await fetch(start, events=100)).outcome,
            'bytes': (await fetch(start, size=1000)).outcome,
            'none': (await replay_fetch.fetch_on_loop(
                nc, 'NO_SUCH', 'dragonflow', subjects, start, 10, 10,
                2.0)).outcome,
        }
        await nc.request('$JS.API.STREAM.PURGE.%s' % STREAM, b'{}',
                         timeout=5)
        outcomes['purged'] = (await fetch(start)).outcome
        outcomes['after'] = (await fetch(time.time_ns())).outcome
        await nc.close()
        nc = await nats.connect(nats_server_no_js.url)
        outcomes['no js'] = (await replay_fetch.fetch_on_loop(
            nc, STREAM, 'dragonflow', subjects, start, 10, 10,
            2.0)).outcome
        await nc.close()
        return outcomes

    assert asyncio.run(check()) == {
        'created after': replay_fetch.WINDOW_PASSED,
        'events': replay_fetch.OVER_LIMIT, 'bytes': replay_fetch.OVER_LIMIT,
        'none': replay_fetch.NO_STREAM, 'purged': replay_fetch.WINDOW_PASSED,
        'after': replay_fetch.OK, 'no js': replay_fetch.NO_STREAM}


def test_stream_created_once_then_kept_and_updated(fresh_nats_server):
    async def check():
        nc = await nats.connect(fresh_nats_server.url)
        results = [await capture_stream.ensure_on_loop(nc, _conf(), 1, 5),
                   await capture_stream.ensure_on_loop(nc, _conf(), 1, 5),
                   await capture_stream.ensure_on_loop(
                       nc, _conf(replay_max_age=60), 1, 5)]
        info = await capture_stream.api_request_on_loop(
            nc, 'INFO', STREAM, None, 5)
        await nc.close()
        return results, info['config']

    results, config = asyncio.run(check())
    assert results == [capture_stream.CREATED, capture_stream.UNCHANGED,
                       capture_stream.UPDATED]
    assert config['subjects'] == ['dragonflow.topic.>']
    assert config['max_age'] == 60 * 10 ** 9
    assert config['allow_direct'] is True and config['discard'] == 'old'
