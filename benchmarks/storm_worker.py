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

"""The processes of the storm benchmark (benchmarks/storm.py).

A worker of df_nats/testing/worker.py, in either world::

    python -m df_nats.testing.worker --world=W benchmarks.storm_worker \\
        publisher|forker [OPTIONS] URL...

``publisher``
    one df-nats publisher process. It says ``connected`` (its server URL,
    its publisher id), and on the ``go`` command sends Dragonflow-sized
    events (``bench_transports.make_event``, ~470 bytes) on one topic at
    ``--rate`` a second until the ``stop`` command, noting when each
    entered ``send_event`` and which were refused (``PublishBufferFull``);
    then it flushes and says ``result``.
``forker``
    imports df-nats and everything a subscriber needs, then forks
    ``--subscribers`` children, as compute nodes: each child makes its own
    df-nats subscriber (one connection) after the fork, on the server list
    it is given (``--placement``), and says ``connected``. Every child
    notes what its callback gets, with the wall-clock time. On the
    ``done`` command (with the number of events published) the forker
    closes a pipe every child watches; each child then waits for what is
    still on its way (``_drain``), closes its subscriber, writes its
    record to ``WORKDIR/sub-<index>.json`` and exits; the forker says
    ``finished``. Each child logs to ``WORKDIR/sub-<index>.log``.
    A child that hears nothing within ``--timeout`` seconds, or whose
    forker died, ends the same way.

``--client nats-py``: the baseline, with nothing of df-nats on the path.
The publisher and every child use plain nats-py as a user would write it
(one connection each, msgpack bodies on core NATS, nats-py's own
reconnect with unlimited attempts, ``reconnect_time_wait`` as df-nats'
default): what this machine delivers without df-nats' costs, and what a
node loss costs a client with no recovery at all.

Times are ``time.time()`` (one wall clock for the whole machine), so
that the parent compares the publisher's send times with the children's
delivery times and its own kill time.
"""

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import select
import signal
import sys
import time
import traceback

import msgpack
import nats

from benchmarks import bench_transports as transports
from df_nats.cmd import common
from df_nats.conf import options
from df_nats import errors
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.testing import worker

TOPIC = transports.TOPIC
# How the subscriber says it asks for a resync (df_nats.pubsub.delivery):
# the reasons are its first argument.
SYNC_LOG_PREFIX = 'df-nats: events may have been missed'
SUBSCRIBER_LOGGER = 'df_nats.pubsub.subscriber'
# How often a publisher sends what is due.
_PACE = 0.005
# How often an eventlet child looks at the done pipe.
_GREEN_POLL = 0.25
# Placements of the children's connections (see servers_for).
PLACEMENTS = ('listed', 'pinned')
# The forker's note of how many events were published, in WORKDIR.
PUBLISHED_FILE = 'published'
# A child's drain before it closes: done once the last event came and the
# callback was quiet this long, or quiet the longer time at all.
DRAIN_QUIET = 0.5
DRAIN_IDLE = 5.0
# A child whose callback was silent this long at the end logs its stacks.
SILENT_DUMP = 8.0
# The clients: df-nats, or the plain nats-py baseline.
CLIENTS = ('df-nats', 'nats-py')
# The baseline's reconnect: unlimited, paced as df-nats' default is.
_PLAIN_CONNECT = {'max_reconnect_attempts': -1, 'reconnect_time_wait': 1.0,
                  'connect_timeout': 5}


def servers_for(index, urls, placement):
    """The ``[df_nats] servers`` of child ``index``.

    Round robin over ``urls``: the child's own node first, then the
    others. ``listed`` gives all of them, as a compute node configured
    with the whole cluster (nats-py shuffles that list at the first
    connect, so the node it lands on is random); ``pinned`` gives only
    its node, and the child learns the others from the cluster's
    announcements (so it can still fail over).
    """
    first = index % len(urls)
    ordered = urls[first:] + urls[:first]
    return ordered if placement == 'listed' else ordered[:1]


def _apply_options(pairs):
    """``NAME=VALUE`` pairs as ``[df_nats]`` overrides (oslo converts)."""
    from oslo_config import cfg
    for pair in pairs or ():
        name, _, value = pair.partition('=')
        cfg.CONF.set_override(name, value, group=options.GROUP)


def _setup(args, servers):
    common.setup_process(servers=servers)
    _apply_options(args.option)


# -- publisher ---------------------------------------------------------------


class _Pace:
    """A publisher's steady rate: how many events are due by now, and
    whether to go on (no ``stop`` command, no timeout, under the limit).
    """

    def __init__(self, args):
        self._rate = args.rate
        self._limit = args.max_events
        self._start = time.monotonic()
        self._deadline = self._start + args.timeout

    def due(self):
        return min(self._limit,
                   int((time.monotonic() - self._start) * self._rate) + 1)

    def going(self, sent):
        command = worker.next_command(0)
        return (len(sent) < self._limit and time.monotonic() < self._deadline
                and not (command is not None and command['type'] == 'stop'))


def _expect_go(command):
    if command is None or command['type'] != 'go':
        raise AssertionError('expected go, got %s' % command)


def event(seq):
    """Event ``seq`` of the storm: a Dragonflow ``DbUpdate``."""
    fields = transports.make_event(seq)
    return api.DbUpdate(fields['table'], fields['key'], fields['action'],
                        fields['value'], topic=fields['topic'])


def _publisher(args):
    _setup(args, args.urls)
    pub = common.load_driver().get_publisher()
    pub.initialize()
    conn = process_context.current().connection
    worker.say('connected', url=conn.connected_url, pid=os.getpid(),
               publisher_id=getattr(pub, 'publisher_id', None))
    _expect_go(worker.next_command(args.timeout))
    sent, refused = [], []
    pace = _Pace(args)
    # A steady rate: every few milliseconds, send what is due by now.
    while pace.going(sent):
        while len(sent) < pace.due():
            seq = len(sent)
            item = event(seq)
            sent.append(time.time())
            try:
                pub.send_event(item)
            except errors.PublishBufferFull:
                refused.append(seq)
        time.sleep(_PACE)
    flushed = pub.flush(30)
    url = conn.connected_url
    stats = dict(conn.stats)
    pub.close()
    worker.say('result', sent=sent, refused=refused, flushed=flushed,
               conn_stats=stats, last_url=url,
               hit_limit=len(sent) >= args.max_events)
    return 0


def _plain_publisher(args):
    """The baseline's publisher: plain nats-py on this thread's loop."""
    return asyncio.run(_plain_publish(args))


async def _plain_publish(args):
    loop = asyncio.get_running_loop()
    nc = await nats.connect(servers=args.urls, **_PLAIN_CONNECT)
    worker.say('connected', url=nc.connected_url.geturl(), pid=os.getpid(),
               publisher_id=None)
    _expect_go(await loop.run_in_executor(None, worker.next_command,
                                          args.timeout))
    sent, refused = [], []
    pace = _Pace(args)
    while pace.going(sent):
        while len(sent) < pace.due():
            seq = len(sent)
            body = msgpack.packb(transports.make_event(seq))
            sent.append(time.time())
            try:
                await nc.publish(transports.RAW_SUBJECT, body)
            except nats.errors.OutboundBufferLimitError:
                refused.append(seq)
        await asyncio.sleep(_PACE)
    try:
        await nc.flush(30)
        flushed = True
    except Exception:
        flushed = False
    url = nc.connected_url.geturl() if nc.connected_url else None
    stats = dict(nc.stats)
    await nc.close()
    worker.say('result', sent=sent, refused=refused, flushed=flushed,
               conn_stats=stats, last_url=url,
               hit_limit=len(sent) >= args.max_events)
    return 0


# -- subscriber children -----------------------------------------------------


class Recorder:
    """The Dragonflow callback of a child: what arrives, and when."""

    def __init__(self, keys):
        self._keys = keys
        self.seqs = []
        self.times = []
        self.syncs = []
        self.unknown = 0
        self.top = -1           # the highest event number delivered
        self.last = time.monotonic()  # when the callback last ran

    def __call__(self, table, key, action, value, topic):
        now = time.time()
        self.last = time.monotonic()
        if action == 'sync':
            self.syncs.append(now)
            return
        seq = self._keys.get(key)
        if seq is None:
            self.unknown += 1  # not a storm event (a publisher event...)
            return
        self.seqs.append(seq)
        self.times.append(now)
        if seq > self.top:
            self.top = seq


class SyncReasons(logging.Handler):
    """The reasons of each resync, as the subscriber logs them.

    Today's counters give the number of syncs, not why; the warning that
    goes with each one lists its reasons (reconnect, gap, delivery queue
    full...). A sync logged otherwise is counted as ``unknown``.
    """

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reasons = []  # [time, 'gap, reconnect']

    def emit(self, record):
        try:
            if str(record.msg).startswith(SYNC_LOG_PREFIX) and record.args:
                self.reasons.append([record.created, str(record.args[0])])
        except Exception:  # never break the subscriber's logging
            pass


def _wait_done(fd, timeout, green):
    """Until the forker closes the done pipe (or dies), or ``timeout``."""
    deadline = time.monotonic() + timeout
    if green:
        from eventlet import patcher
        original_select = patcher.original('select').select
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if green:
            ready = original_select([fd], [], [], 0)[0]
            if not ready:
                time.sleep(min(_GREEN_POLL, left))  # green sleep
                continue
        elif not select.select([fd], [], [], left)[0]:
            return False
        if not os.read(fd, 1):
            return True


def _published(workdir):
    """How many events the publisher sent (the forker's note), or None."""
    try:
        with open(os.path.join(workdir, PUBLISHED_FILE)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _drain(recorder, published, timeout):
    """Let what is on its way arrive before the subscriber closes.

    Until the last event published was delivered and the callback was
    quiet for a moment, or it was quiet for ``DRAIN_IDLE`` seconds (the
    last event may be lost), or ``timeout``: on a loaded machine the
    deliveries may lag the publisher by seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        # From the drain's start at least: a callback stalled until now
        # (a thread blocked) gets its time too.
        quiet = time.monotonic() - max(recorder.last, start)
        if quiet >= DRAIN_IDLE or (
                published and recorder.top >= published - 1
                and quiet >= DRAIN_QUIET):
            return
        time.sleep(0.1)


def _child(args, index, done_fd, keys, t0):
    """One compute node: a subscriber of its own, made after the fork."""
    # A log file of its own, as a compute node has: hundreds of processes
    # appending to one file under a loaded CPU stalled writers (and so
    # the subscriber's dispatcher, which logs) for tens of seconds.
    log_fd = os.open(os.path.join(args.workdir, 'sub-%05d.log' % index),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    recorder = Recorder(keys)
    servers = servers_for(index, args.urls, args.placement)
    if args.client == 'nats-py':
        record = asyncio.run(_plain_subscriber(args, index, servers,
                                               done_fd, recorder))
    else:
        record = _df_nats_subscriber(args, index, servers, done_fd,
                                     recorder)
    base = int(t0 * 1000)
    record.update({
        'index': index, 'pid': os.getpid(), 'servers': servers,
        'world': worker.world(), 'client': args.client,
        # Delivery times in ms since t0, as differences (short JSON).
        't0_ms': base, 'seqs': recorder.seqs,
        'dt_ms': _deltas([int(t * 1000) - base for t in recorder.times]),
        'syncs': recorder.syncs, 'unknown': recorder.unknown,
    })
    path = os.path.join(args.workdir, 'sub-%05d.json' % index)
    with open(path + '.tmp', 'w') as f:
        json.dump(record, f, separators=(',', ':'))
    os.rename(path + '.tmp', path)


def _df_nats_subscriber(args, index, servers, done_fd, recorder):
    """The child's df-nats subscriber, from connect to close; its record's
    fields of the connection.
    """
    green = worker.world() == 'eventlet'
    if green:
        # As oslo.service does in a forked worker: a hub of its own, not
        # the parent's epoll.
        from eventlet import hubs
        hubs.use_hub()
    from oslo_config import cfg
    cfg.CONF.set_override('servers', servers, group=options.GROUP)
    reasons = SyncReasons()
    logging.getLogger(SUBSCRIBER_LOGGER).addHandler(reasons)
    sub = common.load_driver().get_subscriber()
    sub.initialize(recorder)
    sub.register_topic(TOPIC)
    sub.daemonize()
    conn = process_context.current().connection
    reconnects = []
    conn.add_listener(lambda: reconnects.append(time.time()))
    first_url = conn.connected_url
    worker.say('connected', index=index, pid=os.getpid(), url=first_url)
    ended = _wait_done(done_fd, args.timeout, green)
    silent = _dump_if_silent(index, recorder)
    if ended:
        _drain(recorder, _published(args.workdir), args.drain)
    record = {'first_url': first_url, 'last_url': conn.connected_url,
              'ended_by_parent': ended, 'silent_at_end': silent,
              'sync_reasons': reasons.reasons, 'reconnect_times': reconnects,
              'stats': dict(sub.stats), 'conn_stats': dict(conn.stats)}
    sub.close()
    return record


async def _plain_subscriber(args, index, servers, done_fd, recorder):
    """The baseline's subscriber: plain nats-py, as a user would write
    it; the same record fields as ``_df_nats_subscriber``'s.
    """
    loop = asyncio.get_running_loop()
    reconnects = []

    async def reconnected():
        reconnects.append(time.time())

    async def on_message(msg):
        event = msgpack.unpackb(msg.data)
        recorder(event['table'], event['key'], event['action'],
                 event['value'], event['topic'])

    nc = await nats.connect(servers=servers, reconnected_cb=reconnected,
                            **_PLAIN_CONNECT)
    await nc.subscribe(transports.RAW_SUBJECT, cb=on_message)
    await nc.flush()
    first_url = nc.connected_url.geturl()
    worker.say('connected', index=index, pid=os.getpid(), url=first_url)
    # The waits block: on other threads, while the loop delivers.
    ended = await loop.run_in_executor(None, _wait_done, done_fd,
                                       args.timeout, False)
    silent = _dump_if_silent(index, recorder)
    if ended:
        await loop.run_in_executor(None, _drain, recorder,
                                   _published(args.workdir), args.drain)
    last = nc.connected_url
    record = {'first_url': first_url, 'last_url': last and last.geturl(),
              'ended_by_parent': ended, 'silent_at_end': silent,
              'sync_reasons': [], 'reconnect_times': reconnects,
              'stats': {}, 'conn_stats': dict(nc.stats)}
    await nc.close()
    return record


def _dump_if_silent(index, recorder):
    """Seconds since the callback last ran; past ``SILENT_DUMP`` (while
    events flowed) every thread's stack goes to the log, for whoever looks
    into it.
    """
    silent = time.monotonic() - recorder.last
    if silent > SILENT_DUMP:
        sys.stderr.write('storm subscriber %d (pid %d): callback silent for'
                         ' %.0f s; threads:\n' % (index, os.getpid(), silent))
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
    return round(silent, 3)


def _deltas(values):
    out, last = [], 0
    for value in values:
        out.append(value - last)
        last = value
    return out


def _forker(args):
    _setup(args, args.urls)
    # Everything a child needs, imported and built once, before forking:
    # the children share these pages with the forker.
    common.load_driver()
    keys = transports.key_index(args.max_events)
    done_r, done_w = os.pipe()
    children = {}
    t0 = args.t0
    published = os.path.join(args.workdir, PUBLISHED_FILE)
    if os.path.exists(published):
        os.unlink(published)
    sys.stdout.flush()
    sys.stderr.flush()  # nothing buffered is written by every child
    for index in range(args.first, args.first + args.subscribers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(done_w)
                _child(args, index, done_r, keys, t0)
                code = 0
            except BaseException as exc:
                traceback.print_exc()
                worker.say('error', index=index,
                           reason='%s: %s' % (type(exc).__name__, exc))
            finally:
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    os.close(done_r)
    worker.say('forked', pids=sorted(children))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        command = worker.next_command(max(deadline - time.monotonic(), 0))
        if command is None or command['type'] in ('done', 'quit'):
            if command is not None and 'published' in command:
                # For the children's drain: written before they look.
                with open(published + '.tmp', 'w') as f:
                    f.write(str(int(command['published'])))
                os.rename(published + '.tmp', published)
            break
    os.close(done_w)
    statuses = _reap(children, args.close_timeout)
    worker.say('finished', statuses=statuses)
    return 0


def _reap(children, timeout):
    """Wait for the children's exits; kill those past ``timeout``."""
    statuses = {}
    deadline = time.monotonic() + timeout
    while children:
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[children.pop(pid)] = os.waitstatus_to_exitcode(
                    status)
        if not children:
            break
        if time.monotonic() > deadline:
            for pid, index in children.items():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                statuses[index] = 'killed'
            break
        time.sleep(0.1)
    return statuses


def main(argv):
    parser = argparse.ArgumentParser(prog='storm_worker')
    parser.add_argument('--rate', type=float, default=200.0)
    parser.add_argument('--max-events', type=int, default=100000)
    parser.add_argument('--subscribers', type=int, default=1)
    parser.add_argument('--first', type=int, default=0)
    parser.add_argument('--placement', choices=PLACEMENTS, default='listed')
    parser.add_argument('--workdir', default='.')
    parser.add_argument('--t0', type=float, default=0.0)
    parser.add_argument('--timeout', type=float, default=600.0)
    parser.add_argument('--close-timeout', type=float, default=60.0)
    parser.add_argument('--drain', type=float, default=60.0)
    parser.add_argument('--option', action='append', metavar='NAME=VALUE')
    parser.add_argument('--client', choices=CLIENTS, default='df-nats')
    parser.add_argument('role', choices=('publisher', 'forker'))
    parser.add_argument('urls', nargs='+')
    args = parser.parse_args(argv)
    if args.role == 'forker':
        return _forker(args)
    if args.client == 'nats-py':
        return _plain_publisher(args)
    return _publisher(args)
