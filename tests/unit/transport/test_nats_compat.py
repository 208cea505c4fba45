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

"""nats-py's internals that nats_compat uses, as the installed nats-py has
them; and what nats_compat does with them.

The first tests read the installed nats-py: each fails naming the
internal when a release renames or changes it (the functional side is
tests/functional/test_nats_compat.py, against a real server).
"""

import inspect
from urllib import parse

from nats.aio import client as nats_client
from nats.aio import transport as nats_transport
import pytest

from df_nats.transport import nats_compat

NATS_PY = nats_compat.version()


def _missing(owner, name, users):
    return ('nats-py %s: %s.%s is gone or changed; nats_compat.%s relies'
            ' on it' % (NATS_PY, owner, name, users))


def test_client_queues_commands_in_a_pending_list():
    nc = nats_client.Client()
    assert isinstance(getattr(nc, '_pending', None), list), _missing(
        'Client', '_pending', 'write_pending_now, idle_writer')
    assert getattr(nc, '_pending_data_size', None) == 0, _missing(
        'Client', '_pending_data_size', 'write_pending_now')


def test_client_holds_its_transport():
    assert '_transport' in vars(nats_client.Client()), _missing(
        'Client', '_transport',
        'write_pending_now, idle_writer, is_tls, close_socket')


def test_tcp_transport_holds_its_stream_writer():
    transport = nats_transport.TcpTransport()
    assert '_io_writer' in vars(transport), _missing(
        'TcpTransport', '_io_writer',
        'write_pending_now, idle_writer, is_tls')
    assert callable(getattr(transport, 'close', None)), _missing(
        'TcpTransport', 'close', 'close_socket')


def test_flush_pending_is_a_coroutine_taking_force_flush():
    method = getattr(nats_client.Client, '_flush_pending', None)
    assert inspect.iscoroutinefunction(method), _missing(
        'Client', '_flush_pending', 'flush_pending')
    assert 'force_flush' in inspect.signature(method).parameters, _missing(
        'Client', '_flush_pending(force_flush)', 'flush_pending')


def test_connect_command_builds_connect_without_arguments():
    method = getattr(nats_client.Client, '_connect_command', None)
    assert nats_compat.CONNECT_HOOK and callable(method), _missing(
        'Client', '_connect_command', 'HookedClient')
    assert list(inspect.signature(method).parameters) == ['self'], (
        _missing('Client', '_connect_command(self)', 'HookedClient'))
    # The override is the one nats-py's connect calls (by name).
    source = inspect.getsource(nats_client.Client)
    assert 'self._connect_command()' in source, _missing(
        'Client', '_connect_command (no longer called)', 'HookedClient')


def test_client_names_its_current_server():
    assert '_current_server' in vars(nats_client.Client()), _missing(
        'Client', '_current_server', 'server_name')
    server = nats_client.Srv(parse.urlparse('nats://127.0.0.1:4222'))
    assert server.uri.hostname == '127.0.0.1', _missing(
        'Srv', 'uri', 'server_name')


def test_client_counts_out_msgs_and_out_bytes():
    stats = nats_client.Client().stats
    assert stats.get('out_msgs') == 0 and stats.get('out_bytes') == 0, (
        _missing('Client', "stats['out_msgs'/'out_bytes']", 'write_hpub'))


# What nats_compat does with them, on stand-ins.

class _Writer:
    def __init__(self, buffered=0, tls=False):
        self.lines = []
        self.transport = self
        self._buffered = buffered
        self._tls = tls

    def get_write_buffer_size(self):
        return self._buffered

    def writelines(self, lines):
        self.lines.extend(lines)

    def get_extra_info(self, name):
        return object() if name == 'ssl_object' and self._tls else None


class _Transport:
    def __init__(self, writer):
        self._io_writer = writer
        self.closed = False

    def close(self):
        self.closed = True


class _PendingClient:
    """nats-py's client as far as nats_compat looks."""

    def __init__(self, buffered=0, connected=True, tls=False):
        self.is_connected = connected
        self._pending = [b'PUB a 1\r\nx\r\n']
        self._pending_data_size = 12
        self._transport = _Transport(_Writer(buffered, tls))
        self.stats = {'out_msgs': 0, 'out_bytes': 0}


def test_pending_written_at_once_when_the_socket_took_all():
    nc = _PendingClient()
    nats_compat.write_pending_now(nc)
    assert nc._transport._io_writer.lines == [b'PUB a 1\r\nx\r\n']
    assert nc._pending == [] and nc._pending_data_size == 0


@pytest.mark.parametrize('nc', [_PendingClient(buffered=1),
                                _PendingClient(connected=False)],
                         ids=['back-pressure', 'disconnected'])
def test_pending_left_to_the_flusher(nc):
    nats_compat.write_pending_now(nc)
    assert nc._transport._io_writer.lines == []
    assert nc._pending and nc._pending_data_size == 12


def test_pending_left_alone_by_another_transport():
    nc = _PendingClient()
    del nc._transport._io_writer
    nats_compat.write_pending_now(nc)
    assert nc._pending and nc._pending_data_size == 12
    assert nats_compat.idle_writer(nc) is None


def test_idle_writer_only_when_nothing_waits():
    nc = _PendingClient()
    assert nats_compat.idle_writer(nc) is None  # nats-py holds a PUB
    nc._pending = []
    assert nats_compat.idle_writer(nc) is nc._transport._io_writer
    nc._transport._io_writer._buffered = 1
    assert nats_compat.idle_writer(nc) is None


def test_queued_first_ahead_of_what_nats_py_holds():
    nc = _PendingClient(connected=False)
    assert nats_compat.queue_first(nc, [
        ('s', b'ab', {'Df-Seq': 'p i.1'}), ('t', b'', {'Df-Mark': '1'})])
    assert nc._pending == [
        b'HPUB s 27 29\r\nNATS/1.0\r\nDf-Seq: p i.1\r\n\r\nab\r\n',
        b'HPUB t 24 24\r\nNATS/1.0\r\nDf-Mark: 1\r\n\r\n\r\n',
        b'PUB a 1\r\nx\r\n']
    assert nc._pending_data_size == sum(map(len, nc._pending))
    assert nc.stats == {'out_msgs': 2, 'out_bytes': 2}


def test_nothing_queued_first_without_the_expected_internals():
    nc = _PendingClient(connected=False)
    del nc._pending_data_size
    assert not nats_compat.queue_first(nc, [('s', b'x', {})])
    assert nc._pending == [b'PUB a 1\r\nx\r\n']


def test_tls_read_from_the_socket_and_closed_there():
    assert nats_compat.is_tls(_PendingClient(tls=True))
    nc = _PendingClient(tls=False)
    assert not nats_compat.is_tls(nc)
    nats_compat.close_socket(nc)
    assert nc._transport.closed
    nc._transport = None  # before the first connect
    assert not nats_compat.is_tls(nc)


def test_server_name():
    nc = nats_client.Client()
    assert nats_compat.server_name(nc) == '?'
    nc._current_server = nats_client.Srv(
        parse.urlparse('nats://127.0.0.1:4222'))
    assert nats_compat.server_name(nc) == '127.0.0.1:4222'
