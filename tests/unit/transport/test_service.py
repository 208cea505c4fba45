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

"""The process's NATS service: what it reports, and refusals (no server).

Registration on a real server, the replies nats-py builds and refusals by
a real server's permissions are in tests/functional/test_stats.py.
"""

import collections
import types

from nats.micro import service as micro_service
import pytest

from df_nats.transport import service


@pytest.mark.parametrize('version, expected', [
    ('0.0.1.dev87', '0.0.1-dev87'),
    ('1.2.3', '1.2.3'),
    ('1.2.3rc1', '1.2.3-rc1'),
    ('2.0.0.0rc2.dev3', '2.0.0-0rc2.dev3'),
    ('01.2.3', '1.2.3'),
    ('1.2.3.007', '1.2.3-7'),
    ('unknown', '0.0.0-unknown'),
    ('', '0.0.0-unknown'),
])
def test_versions_become_semantic_versions_nats_micro_accepts(version,
                                                              expected):
    assert service.semver(version) == expected
    assert micro_service.SEMVER_REGEX.match(service.semver(version))


def test_role_from_what_the_process_runs():
    assert service.role(1, 0) == 'publisher'
    assert service.role(0, 2) == 'subscriber'
    assert service.role(1, 1) == 'both'
    assert service.role(0, 0) == 'none'
    assert set(service.ROLES) == {'publisher', 'subscriber', 'both', 'none'}


def test_counters_keep_their_names_sum_subscribers_and_show_zeros():
    data = service.counters(
        {'published': 5, 'messages': 2, 'new_counter': 1},
        [{'received': 3, 'gaps': 1}, {'received': 4, 'malformed': 2}],
        outbox_events=1, outbox_bytes=470, last_error=None)
    assert data['connection']['published'] == 5
    assert data['connection']['messages'] == 2
    assert data['connection']['reconnects'] == 0
    assert data['connection']['new_counter'] == 1   # other keys pass
    assert data['subscriber']['received'] == 7
    assert data['subscriber']['gaps'] == 1
    assert data['subscriber']['malformed'] == 2
    assert data['subscriber']['syncs'] == 0
    assert data['subscriber']['duplicates'] == 0
    assert (data['outbox_events'], data['outbox_bytes'],
            data['last_error']) == (1, 470, '')


def test_metadata_are_strings_with_role_and_publisher_id():
    meta = service.metadata({'host': 'h', 'pid': 12}, ['p-1'], 1)
    assert meta == {'host': 'h', 'pid': '12', 'role': 'both',
                    'publisher_id': 'p-1'}
    assert service.metadata({}, [], 0)['publisher_id'] == ''


def test_endpoint_subject_is_under_srv_with_the_instance_id():
    assert service.endpoint_subject('abc') == '$SRV.df-nats.counters.abc'


def test_last_error_redacts_urls_and_stays_one_short_line():
    exc = OSError('cannot reach nats://admin:s3cret@10.0.0.1:4222\nnow')
    text = service.describe_error(exc)
    assert 's3cret' not in text and 'admin' not in text
    assert text == 'OSError: cannot reach nats://***@10.0.0.1:4222 now'
    assert len(service.describe_error(ValueError('x' * 5000))) == 300


@pytest.mark.parametrize('message, registered, refused', [
    ('nats: Permissions Violation for Subscription to "$SRV.PING"',
     False, 'subscribe'),
    ('nats: Permissions Violation for Subscription to'
     ' "$SRV.df-nats.counters.x"', False, 'subscribe'),
    ('nats: Permissions Violation for Publish to "_INBOX.abc.def"',
     True, 'reply'),
    # Before it registered, an inbox refusal is not the service's.
    ('nats: Permissions Violation for Publish to "_INBOX.abc.def"',
     False, None),
    ('nats: Permissions Violation for Publish to "_INBOX_ops.abc"',
     True, None),
    ('nats: Permissions Violation for Publish to "dragonflow.topic.D"',
     True, None),
    ('nats: Permissions Violation for Subscription to "dragonflow.>"',
     True, None),
    ('nats: slow consumer', True, None),
])
def test_refusals_of_the_service_told_from_other_errors(
        message, registered, refused):
    assert service.refusal(Exception(message), '_INBOX',
                           registered) == refused


def test_a_custom_inbox_prefix_names_the_replies():
    exc = Exception('nats: Permissions Violation for Publish to'
                    ' "_inbox_ops.abc"')    # nats-py lower-cases it
    assert service.refusal(exc, '_INBOX_ops', True) == 'reply'
    assert service.refusal(exc, '_INBOX', True) is None


@pytest.mark.parametrize('reply, answered', [
    ('_INBOX.abc', True),
    ('_INBOX.abc.def', True),
    ('dragonflow.topic.D', False),      # issue 19, item 1
    ('$KV.df_publishers.compute-1', False),
    ('$JS.API.STREAM.DELETE.KV_df_publishers', False),
    ('_INBOX', False),
    ('_INBOX.', False),
    ('_INBOXX.abc', False),
    ('_INBOX.*', False),
    ('_INBOX.>', False),
    ('_INBOX..x', False),
    ('_INBOX.a b', False),
    ('_INBOX.' + 'x' * 300, False),
    ('', False),
    (None, False),
])
def test_only_inboxes_are_answered(reply, answered):
    assert service.is_inbox(reply, '_INBOX') is answered


class _Loop:
    def __init__(self):
        self.tasks = []

    def create_task(self, coro):
        self.tasks.append(coro.__qualname__)
        coro.close()


def _conn(enabled=True):
    # call_soon runs on the spot: the test's thread stands for the loop's.
    bridge = types.SimpleNamespace(
        green=False, loop=_Loop(),
        call_soon=lambda fn, *args: fn(*args),
        on_loop_thread=lambda: True)
    conn = types.SimpleNamespace(
        bridge=bridge, pid=4242, stats=collections.Counter(),
        sender=types.SimpleNamespace(outbox_load=(3, 900)),
        connected_url='nats://10.0.0.1:4222',
        conf=types.SimpleNamespace(subject_prefix='dragonflow', user='ctl',
                                   role=None, service_inbox_prefix='_INBOX'),
        listeners=[])
    conn.add_listener = conn.listeners.append
    return conn, service.ProcessService(conn, enabled)


def test_identity_says_who_the_process_is():
    conn, svc = _conn()
    meta = svc._metadata
    assert meta['pid'] == '4242'
    assert meta['threads'] == 'native'
    assert meta['subject_prefix'] == 'dragonflow'
    assert meta['host'] and meta['process'] and meta['df_nats_version']
    assert meta['role'] == 'none' and meta['publisher_id'] == ''
    assert conn.listeners == [svc._reconnected_on_loop]


def test_role_follows_publishers_and_subscribers_joining_and_leaving():
    conn, svc = _conn()
    first, second = collections.Counter(), collections.Counter()
    svc.subscriber_joined(first)
    assert svc._metadata['role'] == 'subscriber'
    svc.publisher_joined('pub-1')
    svc.publisher_joined('pub-1')   # a second publisher driver instance
    assert svc._metadata['role'] == 'both'
    assert svc._metadata['publisher_id'] == 'pub-1'
    svc.subscriber_joined(second)
    svc.subscriber_joined(second)   # once only
    first['received'] += 2
    second['received'] += 5
    conn.stats['published'] += 7
    data = svc.snapshot()
    assert data['subscriber']['received'] == 7
    assert data['connection']['published'] == 7
    assert (data['outbox_events'], data['outbox_bytes']) == (3, 900)
    svc.subscriber_left(first)
    svc.subscriber_left(second)
    svc.publisher_left('pub-1')
    assert svc._metadata['role'] == 'publisher'
    svc.publisher_left('pub-1')
    assert svc._metadata['role'] == 'none'
    assert svc._metadata['publisher_id'] == ''
    assert svc.snapshot()['subscriber']['received'] == 0


def test_gauges_of_the_deliveries_and_the_link_are_in_the_data():
    conn, svc = _conn()
    first, second = collections.Counter(), collections.Counter()
    svc.subscriber_joined(first, lambda: {
        'queue_messages': 2, 'queue_bytes': 300, 'lag_last_us': 40,
        'lag_max_us': 900, 'last_sync': 1700000000})
    svc.subscriber_joined(second, lambda: {
        'queue_messages': 1, 'queue_bytes': 100, 'lag_last_us': 70,
        'lag_max_us': 500, 'last_sync': 1600000000})
    svc._note_rtt_on_loop(0.00125)
    data = svc.snapshot()
    delivery = data['delivery']
    # Depths add up; lags and the last sync are the worst / latest.
    assert (delivery['queue_messages'], delivery['queue_bytes']) == (3, 400)
    assert (delivery['lag_last_us'], delivery['lag_max_us']) == (70, 900)
    assert delivery['last_sync'] == 1700000000
    assert delivery['lag_avg_us'] == 0    # listed before it is measured
    assert data['link'] == {'server': 'nats://10.0.0.1:4222',
                            'rtt_us': 1250}
    assert svc._metadata['user'] == 'ctl'
    svc.subscriber_left(first)
    assert svc.snapshot()['delivery']['queue_bytes'] == 100


def test_metadata_updated_in_place_for_nats_py_to_answer_with():
    _, svc = _conn()
    meta = svc._metadata
    svc.publisher_joined('pub-1')
    assert svc._metadata is meta and meta['role'] == 'publisher'


def test_errors_become_last_error():
    _, svc = _conn()
    assert svc.note_error_on_loop(OSError('nats://u:p@h:1 down')) is False
    assert svc.snapshot()['last_error'] == 'OSError: nats://***@h:1 down'


def test_a_refusal_is_logged_once_and_unregisters(caplog):
    conn, svc = _conn()
    refusal = Exception('nats: Permissions Violation for Subscription to'
                        ' "$SRV.PING"')
    assert svc.note_error_on_loop(refusal) is True
    assert svc.note_error_on_loop(refusal) is True
    warnings = [r.getMessage() for r in caplog.records
                if r.name == 'df_nats.transport.service']
    assert len(warnings) == 1
    assert 'subscribe to $SRV.>' in warnings[0]
    assert 'publish to _INBOX.>' in warnings[0]
    assert 'service_endpoint' in warnings[0]
    assert conn.bridge.loop.tasks == ['ProcessService._unregister']
    assert svc.snapshot()['last_error'] == ''
    # Not tried again after a reconnect.
    svc.start_on_loop(object())
    assert conn.bridge.loop.tasks == ['ProcessService._unregister']


def test_a_refused_reply_is_counted_and_logged_and_never_unregisters(
        caplog):
    # Issue 19, item 1: two requests sharing one reply subject under the
    # server's allow_responses get the second reply refused; every
    # process then unregistered for the rest of its life.
    conn, svc = _conn()
    svc._service = object()     # registered
    refusal = Exception('nats: Permissions Violation for Publish to'
                        ' "_INBOX.shared"')
    for _ in range(5):
        assert svc.note_error_on_loop(refusal) is True
    assert conn.stats['service_replies_denied'] == 5
    assert conn.bridge.loop.tasks == []
    assert svc._service is not None and not svc._refused
    warnings = [r.getMessage() for r in caplog.records
                if r.name == 'df_nats.transport.service']
    assert len(warnings) == 1 and 'the service goes on' in warnings[0]
    assert svc.snapshot()['connection']['service_replies_denied'] == 5


def test_a_request_without_an_inbox_is_counted_logged_and_not_answered(
        caplog):
    conn, svc = _conn()
    asked = []

    async def handler(msg):
        asked.append(msg.reply)

    class _Nc:
        _nuid = 'nats-py reads it'

        async def subscribe(self, subject, queue='', cb=None, **kwargs):
            self.cb = cb
            return (subject, queue)
    nc = _Nc()
    screened = service._InboxOnly(nc, svc._answers_on_loop)
    assert screened._nuid == 'nats-py reads it'

    async def requests():
        assert await screened.subscribe('$SRV.PING', cb=handler) == (
            '$SRV.PING', '')
        for reply in ('_INBOX.a', 'dragonflow.topic.D', '$KV.b.x',
                      '_INBOX.b', None, 'x\x1b[2J' * 100):
            await nc.cb(types.SimpleNamespace(subject='$SRV.PING',
                                              reply=reply))
    import asyncio
    asyncio.run(requests())
    assert asked == ['_INBOX.a', '_INBOX.b']
    assert conn.stats['service_replies_refused'] == 4
    [line] = [r.getMessage() for r in caplog.records
              if r.name == 'df_nats.transport.service']
    assert 'dragonflow.topic.D' in line and 'service_inbox_prefix' in line
    assert '\x1b' not in line and len(line) < 400


def test_disabled_service_never_registers_nor_claims_errors():
    conn, svc = _conn(enabled=False)
    svc.start_on_loop(object())
    svc.publisher_joined('pub-1')
    assert conn.bridge.loop.tasks == [] and conn.listeners == []
    refusal = Exception('nats: Permissions Violation for Subscription to'
                        ' "$SRV.PING"')
    assert svc.note_error_on_loop(refusal) is False


def test_start_registers_in_the_background():
    conn, svc = _conn()
    svc.start_on_loop(object())
    assert conn.bridge.loop.tasks == ['ProcessService._register']
