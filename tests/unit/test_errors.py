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

"""One base for every df-nats exception, builtin parents kept."""

import importlib
import inspect
import pkgutil

import pytest

import df_nats
from df_nats.conf import options
from df_nats import errors
from df_nats.registry import registration
from df_nats.transport import connection
from df_nats.transport import outbox
from df_nats.wire import codec


def _runtime_modules():
    # Every module: the bench and its exceptions left the package.
    for info in pkgutil.walk_packages(df_nats.__path__, 'df_nats.'):
        yield importlib.import_module(info.name)


def test_every_df_nats_exception_derives_from_the_base():
    found = set()
    for module in _runtime_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, BaseException)
                    and cls.__module__.startswith('df_nats.')):
                found.add(cls)
                assert issubclass(cls, errors.DfNatsError), cls
    assert len(found) >= 9


@pytest.mark.parametrize('cls, builtin', [
    (errors.ConfigError, ValueError),
    (errors.UsageError, RuntimeError),
    (errors.ConnectError, RuntimeError),
    (errors.PublishBufferFull, RuntimeError),
    (errors.EventTooLarge, ValueError),
    (errors.MalformedEvent, ValueError),
    (errors.BridgeTimeout, TimeoutError),
    (errors.RegistryUnavailable, RuntimeError),
])
def test_builtin_parents_are_kept(cls, builtin):
    assert issubclass(cls, builtin)


def test_the_former_names_are_the_same_classes():
    assert options.ConfigError is errors.ConfigError
    assert connection.ConnectError is errors.ConnectError
    assert connection.PublishBufferFull is errors.PublishBufferFull
    assert outbox.PublishBufferFull is errors.PublishBufferFull
    assert connection.EventTooLarge is errors.EventTooLarge
    assert codec.MalformedEvent is errors.MalformedEvent
    assert registration.RegistryUnavailable is errors.RegistryUnavailable


def test_config_error_names_the_option():
    exc = errors.ConfigError('servers', 'at least one NATS URL is needed')
    assert exc.option == 'servers'
    assert str(exc) == '[df_nats] servers: at least one NATS URL is needed'
