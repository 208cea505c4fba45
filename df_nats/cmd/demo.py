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

"""``df-nats demo``: the driver end to end, in both worlds, on real NATS.

An embedded nats-server (JetStream on, loopback, a temporary directory)
unless ``--servers`` is given; two subscriber processes loaded through
stevedore as Dragonflow loads them, one eventlet-patched like today's
Dragonflow services and one on native threads; a publisher process
(eventlet, like neutron-server) that sends to the send-all topic and to one
tenant topic per subscriber. Each subscriber must receive exactly its
topics' events, in order, and nothing of the other tenant's.

Credentials and TLS for given servers come from ``--config-file`` (a
``[df_nats]`` section), whose path the workers get: no secret is on any
command line, and a server URL holding one is refused.
"""

import os
import queue
import sys
import tempfile
import time
import uuid

from df_nats.cmd import common
from df_nats.conf import options
from df_nats.testing import embedded_server
from df_nats.testing import worker_process

_TENANT_A = str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-demo-tenant-a'))
_TENANT_B = str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-demo-tenant-b'))


def _worker(label, world, role, servers, config_files, lines, log_dir,
            *extra):
    """One demo worker process, reporting to the shared ``lines``."""
    args = ['--role', role]
    for url in servers:
        args += ['--servers', url]
    # Paths only: the secrets stay in the files.
    for path in config_files:
        args += ['--config-file', os.path.abspath(path)]
    return worker_process.WorkerProcess(
        'df_nats.cmd.demo_worker', args + list(extra), world=world,
        label=label, log_path=os.path.join(log_dir, label + '.log'),
        inbox=lines)


def _expect(events, topics, own):
    return sum(1 for seq in range(events) if topics[seq % len(topics)]
               in own)


def _wait_for(lines, kind, workers, deadline):
    """Wait for a ``kind`` line from every worker; print events meanwhile."""
    pending = set(workers)
    results = {}
    while pending:
        try:
            worker, msg = lines.get(timeout=max(deadline - time.time(), 0))
        except queue.Empty:
            raise RuntimeError('timed out waiting for %s from %s' % (
                kind, ', '.join(w.label for w in pending)))
        if msg['type'] == 'event':
            print('  %-20s <- %-6s %-8s topic=%-10.10s seq=%d' % (
                worker.label, msg['table'], msg['action'], msg['topic'],
                msg['seq']))
        elif msg['type'] == kind and worker in pending:
            pending.discard(worker)
            results[worker] = msg
        elif (msg['type'] in ('error', worker_process.EOF)
              and worker in pending):
            raise RuntimeError('%s exited early:\n%s' % (
                worker.label, worker.stderr_text(2000)))
    return results


def _report(sent, subs):
    ok = True
    print('\nsummary')
    print('  publisher (eventlet): sent %d events at %.0f events/s' % (
        sent['sent'], sent['rate']))
    for worker, res in subs.items():
        clean = (res['received'] == res['expected']
                 and not (res['wrong_topic'] or res['out_of_order']))
        ok = ok and clean
        print('  %-20s received %d/%d at %.0f events/s, other tenant\'s: %d,'
              ' out of order: %d, malformed: %d  %s' % (
                  worker.label, res['received'], res['expected'],
                  res['rate'], res['wrong_topic'], res['out_of_order'],
                  res['malformed'], 'OK' if clean else 'FAILED'))
    return ok


def _run_workers(servers, args, log_dir):
    topics = ['D', _TENANT_A, _TENANT_B]
    lines = queue.Queue()
    deadline = time.time() + args.timeout
    plans = [('subscriber-eventlet', 'eventlet', ['D', _TENANT_A]),
             ('subscriber-native', 'native', ['D', _TENANT_B])]
    config_files = args.config_file or []
    subs = [_worker(label, world, 'subscriber', servers, config_files,
                    lines, log_dir,
                    '--topics', ','.join(own), '--show', str(args.show),
                    '--expect', str(_expect(args.events, topics, own)),
                    '--timeout', str(args.timeout))
            for label, world, own in plans]
    workers = list(subs)
    try:
        _wait_for(lines, 'ready', subs, deadline)
        print('subscribers ready: eventlet on D + tenant %s..., native on'
              ' D + tenant %s...' % (_TENANT_A[:8], _TENANT_B[:8]))
        pub = _worker('publisher-eventlet', 'eventlet', 'publisher',
                      servers, config_files, lines, log_dir,
                      '--topics', ','.join(topics),
                      '--events', str(args.events),
                      '--timeout', str(args.timeout))
        workers.append(pub)
        # One wait for all: a subscriber may finish before the publisher.
        results = _wait_for(lines, 'summary', [pub] + subs, deadline)
        sent = results.pop(pub)
        return _report(sent, results)
    finally:
        for worker in workers:
            worker.kill()


def _check_server_binary():
    """Fail at once, saying what to do, when there is no nats-server."""
    try:
        embedded_server.find_nats_server()
    except embedded_server.NatsServerError as exc:
        raise RuntimeError('%s; or pass --servers nats://HOST:4222 to use a'
                           ' running NATS server' % exc) from None


def run(args):
    """Run the demo; 0 when every subscriber got exactly its events."""
    log_dir = tempfile.mkdtemp(prefix='df-nats-demo-')
    server = None
    servers = args.servers
    if servers or args.config_file:
        # Bad options fail here, naming the option, before any worker.
        common.setup_process(servers=servers, config_files=args.config_file)
        options.validate()
    try:
        if not servers:
            _check_server_binary()
            server = embedded_server.NatsServer(jetstream=True)
            server.start()
            servers = [server.url]
            print('embedded nats-server with JetStream at %s' % server.url)
        print('driver: [df] pub_sub_driver = nats (stevedore namespace'
              ' dragonflow.pubsub_driver); %d events' % args.events)
        ok = _run_workers(servers, args, log_dir)
    except RuntimeError as exc:
        print('demo failed: %s' % exc, file=sys.stderr)
        ok = False
    finally:
        if server is not None:
            server.cleanup()
    print('worker logs: %s' % log_dir)
    return 0 if ok else 1
