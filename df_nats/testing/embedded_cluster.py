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

"""A cluster of real ``nats-server`` processes on 127.0.0.1, for tests and
benchmarks: full-mesh routes, JetStream, nodes to kill and restart.
"""

import time
import urllib.parse
from typing import Dict, List, Optional

from df_nats.loop import log
from df_nats.testing.embedded_server import _Managed
from df_nats.testing.embedded_server import free_port
from df_nats.testing.embedded_server import NatsServer
from df_nats.testing.embedded_server import NatsServerError

LOG = log.get_logger(__name__)

_POLL = 0.1


class NatsCluster(_Managed):
    """A full-mesh cluster of ``size`` NatsServer nodes named n1..nN.

    ``start()`` returns once all routes are up and, with JetStream, every
    node agrees on a meta leader that sees all its peers current, so that
    replicated streams and KV buckets can be created right away.
    """

    def __init__(self, size: int = 3, jetstream: bool = True,
                 name: str = 'df-nats-test') -> None:
        if size < 1:
            raise ValueError('size must be >= 1')
        self.name = name
        self.jetstream = jetstream
        ports = [free_port() for _ in range(size)]
        self.nodes = [NatsServer(name='n%d' % (i + 1), jetstream=jetstream,
                                 cluster_name=name, cluster_port=port,
                                 routes=[p for p in ports if p != port])
                      for i, port in enumerate(ports)]

    @property
    def urls(self) -> List[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 20) -> None:
        """Start all nodes at once, then wait for the cluster to form."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                if not node.is_running():
                    node._spawn()
            for node in self.nodes:
                node.wait_ready(max(deadline - time.monotonic(), 1))
            self.wait_formed(max(deadline - time.monotonic(), 1))
        except BaseException:
            self.stop()
            raise

    def wait_formed(self, timeout: float = 20) -> None:
        """Wait for full routes and an agreed JetStream meta leader.

        Call it after restarting a node to know the cluster healed.
        """
        deadline = time.monotonic() + timeout
        status: Dict[str, str] = {}
        while time.monotonic() < deadline:
            status = {node.name: self._status(node) for node in self.nodes}
            if set(status.values()) == {'ok'} and self._leader_ok():
                LOG.info('NATS cluster %s formed: %s', self.name, self.urls)
                return
            time.sleep(_POLL)
        raise NatsServerError('NATS cluster %s not formed after %ss: %s'
                              % (self.name, timeout, status))

    def _status(self, node: NatsServer) -> str:
        routez = node.get_json('/routez') or {}
        peers = {r.get('remote_name') for r in routez.get('routes') or ()}
        peers.discard(None)
        if len(peers) < len(self.nodes) - 1:
            return 'routes to %s' % sorted(peers)
        if self.jetstream and node.http_get(
                '/healthz?js-enabled-only=true')[0] != 200:
            return 'jetstream not ready'
        return 'ok'

    def _meta(self, node: NatsServer) -> Optional[dict]:
        """The node's view of the JetStream meta group ({} if unknown)."""
        jsz = node.get_json('/jsz')
        if jsz is None:
            return {}
        if 'meta_cluster' not in jsz:
            return None  # this server version does not report it at all
        return jsz['meta_cluster'] or {}

    def _leader_ok(self) -> bool:
        if not self.jetstream:
            return True
        metas = {node.name: self._meta(node) for node in self.nodes}
        if None in metas.values():
            return True
        leaders = {meta.get('leader') for meta in metas.values()}
        if len(leaders) != 1 or not leaders <= set(metas):
            return False
        replicas = metas[leaders.pop()].get('replicas') or ()
        return len(replicas) == len(self.nodes) - 1 and all(
            r.get('current') and not r.get('offline') for r in replicas)

    def node_for(self, url: Optional[str]) -> Optional[NatsServer]:
        """The node serving ``url`` (any host form, by port), or None."""
        if not url:
            return None
        try:
            port = urllib.parse.urlsplit(url).port
        except ValueError:
            return None
        for node in self.nodes:
            if node.client_port == port:
                return node
        return None

    def heal(self, timeout: float = 30) -> None:
        """Start every node that is down, then wait for the cluster."""
        for node in self.nodes:
            if not node.is_running():
                node.start(timeout)
        self.wait_formed(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
