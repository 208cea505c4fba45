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

"""df-nats' loggers, safe to use on the bridge's loop thread.

Under eventlet a logging handler's lock is green, and a native thread that
waits on a contended green lock fails or hangs the hub; so does making a
record there (``threading.current_thread()`` is green too). So under
eventlet nothing is logged on the loop thread:

* every df-nats logger comes from ``get_logger``: a call on it made on the
  loop thread is handed, as it is, to the caller's world, which makes the
  record and handles it. Code on the loop thread therefore logs with an
  ordinary ``LOG.warning(...)``, like any other code;
* a logger filter on those loggers and on the ones asyncio and nats-py
  log to by themselves on the loop thread hands any record made there to
  the caller's world before a handler lock is taken.
"""

import functools
import logging as std_logging
import sys
import time

from oslo_log import log as logging

# Loggers of the libraries that log on the loop thread by themselves. A
# logger filter sees only records of its own logger, not of its children,
# so these are the exact names the modules log under.
_LIBRARY_LOGGERS = ('asyncio', 'nats.aio.client', 'nats.js.kv')


class _LoopRecordDiverter(std_logging.Filter):
    """Moves records logged on the loop thread to the caller's world.

    Logger filters run before any handler lock is taken, so the record
    leaves the loop thread untouched and is handled again, by the same
    logger, in the caller's world (where this filter lets it through).
    Only under eventlet: with native threads the handlers' locks are
    native too, and the loop thread logs directly.
    """

    def __init__(self):
        super().__init__()
        self.bridge = None

    def filter(self, record):
        bridge = _loop_bridge()
        if bridge is None:
            return True
        bridge.world.post(_handle, record)
        return False


def _handle(record):
    # The caller's world: getLogger takes logging's module lock, green
    # under eventlet, so it is not called on the loop thread either.
    std_logging.getLogger(record.name).handle(record)


_diverter = _LoopRecordDiverter()


def _loop_bridge():
    """The bridge when called on its loop thread under eventlet, or None."""
    bridge = _diverter.bridge
    if bridge is not None and bridge.green and bridge.on_loop_thread():
        return bridge
    return None


class _LoopSafeLogger(logging.KeywordArgumentAdapter):
    """oslo.log's logger, whose calls on the loop thread under eventlet are
    made in the caller's world instead (``exc_info`` taken here).
    """

    def log(self, level, msg, *args, **kwargs):
        bridge = _loop_bridge()
        if bridge is None:
            super().log(level, msg, *args, **kwargs)
            return
        if kwargs.get('exc_info') is True:
            kwargs['exc_info'] = sys.exc_info()
        bridge.world.post(functools.partial(super().log, level, msg, *args,
                                            **kwargs))


_loggers = {}


def get_logger(name: str):
    """The logger of a df-nats module (oslo.log's, safe on the loop).

    Every module of df-nats gets its logger here (a unit test checks it).
    """
    logger = _loggers.get(name)
    if logger is None:
        std_logger = std_logging.getLogger(name)
        std_logger.addFilter(_diverter)
        logger = _loggers[name] = _LoopSafeLogger(
            std_logger, {'project': 'unknown', 'version': 'unknown'})
    return logger


def divert_loop_records(bridge):
    """Divert what ``bridge``'s loop thread logs from now on (see above)."""
    _diverter.bridge = bridge
    for name in _LIBRARY_LOGGERS:
        std_logging.getLogger(name).addFilter(_diverter)


def forget_bridge():
    """Divert nothing until the next bridge (a forked child's first state).

    The parent's loop thread does not exist in the child; a thread of the
    child could have its identity.
    """
    _diverter.bridge = None


class Throttled:
    """A warning logged at most once per ``interval`` seconds.

    For problems that can come at message rate (malformed input, gaps):
    the caller counts every one, and the log shows one line per interval.
    """

    def __init__(self, logger, interval: float = 1.0):
        self._logger = logger
        self._interval = interval
        self._last = None

    def warning(self, msg: str, *args) -> bool:
        """Log unless one was logged less than ``interval`` ago."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        self._logger.warning(msg, *args)
        return True
