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

"""df-nats' loggers: loop-thread records diverted, warnings throttled.

The real thing, an eventlet process logging from the loop thread, is the
logging storm scenario (tests/functional/test_driver.py).
"""

import importlib
import logging as std_logging
import pathlib
import pkgutil
import re

import pytest

import df_nats
from df_nats.loop import log
from df_nats.pubsub import process_context


def _df_nats_modules():
    for info in pkgutil.walk_packages(df_nats.__path__, 'df_nats.'):
        yield info.name


def test_every_df_nats_logger_diverts_loop_records():
    # Enforced rather than remembered: a module that made its logger with
    # oslo.log (or logging) directly would log on the loop thread.
    checked = 0
    for name in _df_nats_modules():
        module = importlib.import_module(name)
        logger = getattr(module, 'LOG', None)
        if logger is None:
            continue
        assert isinstance(logger, log._LoopSafeLogger), name
        assert log._diverter in logger.logger.filters, name
        checked += 1
    assert checked >= 10
    root = pathlib.Path(df_nats.__file__).parent
    own = re.compile(r'getLogger\(')
    for path in root.rglob('*.py'):
        if path != root / 'loop' / 'log.py':
            assert not own.search(path.read_text()), path


class _GreenBridge:
    """A bridge as the diverter sees it under eventlet, on its loop."""

    green = True

    def __init__(self):
        self.posted = []
        self.on_loop = True

    def on_loop_thread(self):
        return self.on_loop

    @property
    def world(self):
        return self

    def post(self, fn, *args):
        self.posted.append((fn, args))


class _Records(std_logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []
        self.records = []

    def emit(self, record):
        self.messages.append(record.getMessage())
        self.records.append(record)


@pytest.fixture
def green_bridge():
    real = process_context.current().bridge
    fake = _GreenBridge()
    log.divert_loop_records(fake)
    try:
        yield fake
    finally:
        log.divert_loop_records(real)


@pytest.fixture
def records():
    logger = log.get_logger('df_nats.test_log')
    handler = _Records()
    logger.logger.addHandler(handler)
    logger.logger.setLevel(std_logging.DEBUG)
    try:
        yield logger, handler.messages
    finally:
        logger.logger.removeHandler(handler)


def test_loop_records_handled_in_the_callers_world(green_bridge, records):
    logger, seen = records
    logger.warning('from the loop %d', 1)
    # No handler ran on the loop thread: the record was posted.
    assert seen == [] and len(green_bridge.posted) == 1
    green_bridge.on_loop = False  # the caller's world runs what was posted
    fn, args = green_bridge.posted.pop()
    fn(*args)
    assert seen == ['from the loop 1']
    logger.info('from the caller')
    assert seen == ['from the loop 1', 'from the caller']
    assert green_bridge.posted == []


def test_no_record_is_made_on_the_loop_thread(
        green_bridge, records, monkeypatch):
    logger, seen = records
    made = []
    factory = std_logging.getLogRecordFactory()

    def note(*args, **kwargs):
        made.append(green_bridge.on_loop)
        return factory(*args, **kwargs)
    monkeypatch.setattr(std_logging, '_logRecordFactory', note)
    try:
        raise KeyError('expected')
    except KeyError:
        logger.exception('failed on the loop')
    green_bridge.on_loop = False
    for fn, args in green_bridge.posted:
        fn(*args)
    assert made == [False] and seen == ['failed on the loop']
    handler = logger.logger.handlers[-1]
    assert handler.records[0].exc_info[0] is KeyError


def test_records_made_on_the_loop_thread_are_diverted(green_bridge, records):
    logger, seen = records
    logger.logger.warning('made on the loop')  # the std logger: a record
    assert seen == [] and len(green_bridge.posted) == 1
    green_bridge.on_loop = False
    fn, args = green_bridge.posted.pop()
    fn(*args)
    assert seen == ['made on the loop']


def test_library_loggers_are_diverted_too(green_bridge):
    for name in ('asyncio', 'nats.aio.client'):
        std_logging.getLogger(name).error('library line')
    assert len(green_bridge.posted) == 2


def test_native_world_logs_on_the_loop_thread_directly(green_bridge,
                                                       records):
    green_bridge.green = False
    logger, seen = records
    logger.warning('direct')
    assert seen == ['direct'] and green_bridge.posted == []


def test_nothing_diverted_once_the_bridge_is_forgotten(
        green_bridge, records):
    log.forget_bridge()
    logger, seen = records
    logger.warning('after a fork')
    assert seen == ['after a fork'] and green_bridge.posted == []


def test_throttled_warning_once_per_interval(records, monkeypatch):
    logger, seen = records
    now = [100.0]
    monkeypatch.setattr(log.time, 'monotonic', lambda: now[0])
    warning = log.Throttled(logger, interval=1.0)
    assert warning.warning('w %d', 1) is True
    now[0] += 0.5
    assert warning.warning('w %d', 2) is False
    now[0] += 0.5
    assert warning.warning('w %d', 3) is True
    assert seen == ['w 1', 'w 3']
