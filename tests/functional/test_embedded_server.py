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

"""Functional tests of df_nats.testing.embedded_server on a real nats-server.
"""

import asyncio
import os
import socket
import sys
import sysconfig

import nats
from nats import errors as nats_errors
from nats.js import errors as js_errors
import pytest

from df_nats.testing import embedded_server

JS_UNAVAILABLE = (js_errors.ServiceUnavailableError,
                  nats_errors.NoRespondersError, nats_errors.TimeoutError)


async def _connect(url):
    return await nats.connect(url, connect_timeout=2, allow_reconnect=False)


async def _pubsub(pub_url, sub_url, subject='df.test', data=b'hello'):
    """Publish on pub_url until the subscriber on sub_url gets data."""
    sub_nc = await _connect(sub_url)
    pub_nc = sub_nc if pub_url == sub_url else await _connect(pub_url)
    try:
        sub = await sub_nc.subscribe(subject)
        await sub_nc.flush()
        # Interest crosses routes asynchronously: retry for a while.
        for _ in range(25):
            await pub_nc.publish(subject, data)
            await pub_nc.flush()
            try:
                return (await sub.next_msg(timeout=0.2)).data
            except nats_errors.TimeoutError:
                continue
        return None
    finally:
        await sub_nc.close()
        if pub_nc is not sub_nc:
            await pub_nc.close()


async def _create_kv(js, bucket, **kv_opts):
    # Right after a (re)start the meta leader may not have had the first
    # STATSZ of every peer yet (not visible on the monitor port), and then
    # rejects replicated placement with "no suitable peers": retry briefly.
    for _ in range(30):
        try:
            return await js.create_key_value(bucket=bucket, **kv_opts)
        except js_errors.BadRequestError as exc:
            if 'no suitable peers' not in str(exc.description):
                raise
            await asyncio.sleep(0.1)
    return await js.create_key_value(bucket=bucket, **kv_opts)


async def _kv_put_get(url, bucket, key, value, **kv_opts):
    nc = await _connect(url)
    try:
        kv = await _create_kv(nc.jetstream(), bucket, **kv_opts)
        if value is not None:
            await kv.put(key, value)
        return (await kv.get(key)).value
    finally:
        await nc.close()


def _refused(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
    except OSError:
        return True
    return False


def test_pubsub_round_trip(nats_url):
    assert asyncio.run(_pubsub(nats_url, nats_url)) == b'hello'


def test_listens_on_loopback_only(nats_server):
    varz = nats_server.get_json('/varz')
    assert varz['host'] == '127.0.0.1'
    assert varz['http_host'] == '127.0.0.1'
    assert varz['port'] == nats_server.client_port
    assert nats_server.url == 'nats://127.0.0.1:%d' % nats_server.client_port
    assert nats_server.localhost_url == (
        'nats://localhost:%d' % nats_server.client_port)
    with open(nats_server.config_path) as f:
        assert '0.0.0.0' not in f.read()
    with pytest.raises(ValueError):
        embedded_server.NatsServer(host='0.0.0.0')


def test_jetstream_kv(nats_server):
    assert asyncio.run(_kv_put_get(nats_server.url, 't', 'k', b'v')) == b'v'


def test_kill_restart_keeps_port_and_data(fresh_nats_server):
    server = fresh_nats_server
    url, port, old_pid = server.url, server.client_port, server.pid
    asyncio.run(_kv_put_get(url, 'persist', 'k', b'before-crash'))

    server.kill()
    assert not server.is_running()
    assert _refused(port)

    server.restart()
    assert server.is_running()
    assert server.pid != old_pid
    assert (server.url, server.client_port) == (url, port)
    assert asyncio.run(_pubsub(url, url)) == b'hello'
    assert asyncio.run(
        _kv_put_get(url, 'persist', 'k', None)) == b'before-crash'


def test_stop_and_context_manager_cleanup():
    with embedded_server.NatsServer(jetstream=False) as server:
        tmp_dir, port = server.dir, server.client_port
        assert server.is_running()
        server.stop()
        assert not server.is_running()
        assert _refused(port)
        server.start()
        assert server.is_running()
    assert not server.is_running()
    assert not os.path.exists(tmp_dir)


def test_jetstream_disabled(nats_server_no_js):
    assert asyncio.run(
        _pubsub(nats_server_no_js.url, nats_server_no_js.url)) == b'hello'
    with pytest.raises(JS_UNAVAILABLE):
        asyncio.run(_kv_put_get(nats_server_no_js.url, 't', 'k', b'v'))


def test_start_failure_reports_log_tail():
    server = embedded_server.NatsServer(extra_config='bogus {{{ unclosed')
    try:
        with pytest.raises(embedded_server.NatsServerError) as exc:
            server.start(timeout=5)
        assert 'Parse error' in str(exc.value)
        assert server.log_path in str(exc.value)
        assert not server.is_running()
    finally:
        server.cleanup()


def test_find_nats_server_default():
    path = embedded_server.find_nats_server()
    assert os.path.basename(path) == 'nats-server'
    assert os.access(path, os.X_OK)


def test_find_nats_server_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))
    monkeypatch.setattr(sysconfig, 'get_path', lambda *a, **kw: str(tmp_path))
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(embedded_server.NatsServerError,
                       match=r"pip install 'df-nats\[server\]'"):
        embedded_server.find_nats_server()


def test_free_port_unique():
    ports = {embedded_server.free_port() for _ in range(50)}
    assert len(ports) == 50


def test_cluster_routes_and_cross_node_pubsub(nats_cluster):
    assert len(nats_cluster.nodes) == 3
    for node in nats_cluster.nodes:
        routez = node.get_json('/routez')
        peers = {r['remote_name'] for r in routez['routes']}
        assert peers == {n.name for n in nats_cluster.nodes} - {node.name}
        assert all(r['ip'] == '127.0.0.1' for r in routez['routes'])
    n1, _, n3 = nats_cluster.urls
    assert asyncio.run(_pubsub(n1, n3, 'df.cluster')) == b'hello'


def test_cluster_kv_replicas(nats_cluster):
    n1, _, n3 = nats_cluster.urls
    assert asyncio.run(
        _kv_put_get(n1, 'r3', 'k', b'v', replicas=3)) == b'v'
    assert asyncio.run(_kv_put_get(n3, 'r3', 'k', None, replicas=3)) == b'v'


def test_cluster_node_kill_and_restart(nats_cluster):
    n1, n2, n3 = nats_cluster.nodes
    n2.kill()
    assert not n2.is_running()
    assert asyncio.run(_pubsub(n1.url, n3.url, 'df.degraded')) == b'hello'
    n2.restart()
    nats_cluster.wait_formed(timeout=20)
    assert asyncio.run(_pubsub(n2.url, n1.url, 'df.healed')) == b'hello'
