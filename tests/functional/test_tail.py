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

"""``df-nats tail`` against a real server and real publishers."""

import asyncio
import json
import subprocess
import sys

import nats

from df_nats.testing.worker_process import child_env
from df_nats.testing.worker_process import WorkerProcess
from df_nats.wire import codec
from tests.functional.test_driver import ROOT


def _tail(url, *args):
    proc = subprocess.Popen(
        [sys.executable, '-m', 'df_nats.cmd.main', 'tail', '--servers', url]
        + list(args), cwd=ROOT, env=child_env([ROOT]), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stderr:
        if 'df-nats tail: listening on' in line:
            return proc
    proc.kill()
    raise AssertionError('tail did not start: %s' % proc.communicate())


def _publish(url, world, events, topics='D'):
    proc = WorkerProcess(
        'df_nats.cmd.demo_worker', ['--role', 'publisher', '--topics', topics,
                                    '--events', events, '--servers', url,
                                    '--origin', world], world=world)
    assert proc.wait(120) == 0, proc.stderr_text(3000)
    assert proc.expect('summary', timeout=0)['sent'] == events


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError('tail hung: %s' % err[-3000:])
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_tail_json_unpacks_batches_in_order(nats_server):
    n = 3000
    proc = _tail(nats_server.url, '--json', '--values', '--count',
                 str(2 * n + 2))
    for world in ('eventlet', 'native'):
        _publish(nats_server.url, world, n)

    async def crafted():
        # A batch from a hand-written client, one element malformed.
        nc = await nats.connect(nats_server.url)
        good = [codec.pack_event({'table': 'lport', 'key': key,
                                  'action': 'delete', 'value': None,
                                  'topic': 'D'}) for key in ('x', 'y')]
        await nc.publish('dragonflow.topic.D', codec.batch_body(
            [good[0], b'\x81\x01\x02', good[1]]))
        await nc.flush()
        await nc.close()
    asyncio.run(crafted())
    out, err = _finish(proc)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 * n + 2
    for world in ('eventlet', 'native'):
        mine = [r for r in records if r['value']
                and json.loads(r['value'])['origin'] == world]
        assert [json.loads(r['value'])['seq'] for r in mine] == list(
            range(n))
        assert {r['publisher'] for r in mine} != {None}
        assert {r['topic'] for r in mine} == {'D'}
        assert {r['table'] for r in mine} == {'lport'}
        # A burst leaves in batches; each line says where it stood.
        assert max(r['count'] for r in mine) > 1
        seqs = [r['seq'] for r in mine]
        assert seqs == sorted(seqs)
    assert [(r['key'], r['action'], r['seq']) for r in records[-2:]] == [
        ('x', 'delete', None), ('y', 'delete', None)]
    assert '1 malformed event(s)' in err


def test_tail_text_names_the_topic_and_filters(nats_server):
    proc = _tail(nats_server.url, 'T1', '--count', '1')
    _publish(nats_server.url, 'native', 1, topics='T2')  # not followed
    _publish(nats_server.url, 'native', 1, topics='T1')
    out, _ = _finish(proc)
    header, line = out.splitlines()
    assert header.split() == ['TIME', 'PUBLISHER', 'SEQ', 'TABLE',
                              'ACTION', 'KEY', 'TOPIC']
    cells = line.split()
    assert cells[3:5] == ['lport', 'create'] and cells[-1] == 'T1'
    assert cells[2].endswith('.1')   # the first message of its stream


def test_tail_shows_listener_topics_of_the_shared_subject(nats_server):
    # The listeners' queue group: every listener_ topic travels on one
    # subject; tail reads a copy of it (not as a member) and prints only
    # the listener topics named.
    proc = _tail(nats_server.url, 'listener_b', '--json', '--count', '1')
    _publish(nats_server.url, 'native', 1, topics='listener_a')
    _publish(nats_server.url, 'native', 1, topics='listener_b')
    out, _ = _finish(proc)
    [record] = [json.loads(line) for line in out.splitlines()]
    assert record['subject'] == 'dragonflow.listeners'
    assert record['topic'] == record['event_topic'] == 'listener_b'
    everything = _tail(nats_server.url, '--json', '--count', '2')
    _publish(nats_server.url, 'native', 1, topics='listener_a')
    _publish(nats_server.url, 'native', 1, topics='D')
    out, _ = _finish(everything)
    assert sorted(json.loads(line)['topic'] for line in out.splitlines()) == [
        'D', 'listener_a']


def test_tail_writes_no_escape_sequence_from_the_wire(nats_server):
    from tests.functional import hostile_tools
    hostile = hostile_tools.HOSTILE_TEXT
    proc = _tail(nats_server.url, 'ESC', '--values', '--count', '2')

    async def crafted():
        nc = await nats.connect(nats_server.url)
        event = codec.pack_event({'table': 'lport' + hostile,
                                  'key': hostile, 'action': 'set',
                                  'value': hostile, 'topic': 'ESC'})
        await nc.publish('dragonflow.topic.ESC', event, headers={
            'Df-Seq': 'pub%s inc.1' % hostile_tools.ESCAPES[0]})
        await nc.publish('dragonflow.topic.ESC', codec.batch_body(
            [event, b'\x81\x01\x02']))
        await nc.flush()
        await nc.close()
    asyncio.run(crafted())
    out, err = _finish(proc)
    assert '\x1b' not in out + err
    assert '\x9b' not in out and '\u202e' not in out
    lines = out.splitlines()[1:]
    assert len(lines) == 2
    for line in lines:
        for escape in hostile_tools.ESCAPES:
            assert escape.encode('unicode_escape').decode() in line
    assert lines[0].split()[1] == 'pub\\x1b[A'
