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
from df_nats import errors


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


def test_each_exception_has_one_name_in_its_own_module():
    # No aliases: callers import an error from where it is defined
    # (df_nats.errors, or client.PlaintextRefused).
    aliases = []
    for module in _runtime_modules():
        if module.__name__.startswith('df_nats.testing.'):
            continue  # harness: imports its own errors by name
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, BaseException)
                    and cls.__module__.startswith('df_nats.')
                    and cls.__module__ != module.__name__):
                aliases.append('%s.%s' % (module.__name__, name))
    assert aliases == []


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


def test_config_error_names_the_option():
    exc = errors.ConfigError('servers', 'at least one NATS URL is needed')
    assert exc.option == 'servers'
    assert str(exc) == '[df_nats] servers: at least one NATS URL is needed'
