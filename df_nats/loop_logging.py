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

"""Logging from the bridge's loop thread without touching green locks.

Under eventlet a logging handler's lock is green, and a native thread that
waits on a contended green lock fails or hangs the hub. So under eventlet
nothing is logged on the loop thread: df-nats' own records go through
``LoopLogger`` and records that asyncio and nats-py log there by themselves
are diverted by a logger filter; both are handed to the caller's world.
"""

import functools
import logging as std_logging
import sys


class LoopLogger:
    """A logger the loop thread may use in either world.

    Under eventlet the record is handed to the caller's world, because a
    logging handler's lock is green there; otherwise it logs directly.
    """

    def __init__(self, bridge, logger):
        self._bridge = bridge
        self._logger = logger

    def log(self, level: int, msg: str, *args, exc_info=None):
        if not self._logger.isEnabledFor(level):
            return
        if exc_info is True:
            exc_info = sys.exc_info()
        if self._bridge.green:
            self._bridge.world.post(functools.partial(
                self._logger.log, level, msg, *args, exc_info=exc_info))
        else:
            self._logger.log(level, msg, *args, exc_info=exc_info)

    def debug(self, msg, *args):
        self.log(std_logging.DEBUG, msg, *args)

    def info(self, msg, *args):
        self.log(std_logging.INFO, msg, *args)

    def warning(self, msg, *args):
        self.log(std_logging.WARNING, msg, *args)

    def error(self, msg, *args, exc_info=None):
        self.log(std_logging.ERROR, msg, *args, exc_info=exc_info)


# Loggers of the libraries that log on the loop thread by themselves. A
# logger filter sees only records of its own logger, not of its children,
# so these are the exact names the modules log under.
_LIBRARY_LOGGERS = ('asyncio', 'nats.aio.client', 'nats.js.kv')


class _LoopRecordDiverter(std_logging.Filter):
    """Moves records logged on the loop thread to the caller's world.

    Installed under eventlet on the loggers of asyncio and nats-py, which
    log on the loop thread by themselves: logger filters run before any
    handler lock is taken, so the record leaves the loop thread untouched
    and is handled again, lock and all, by the caller's world.
    """

    def __init__(self, bridge):
        super().__init__()
        self._bridge = bridge

    def filter(self, record):
        if not self._bridge.on_loop_thread():
            return True
        logger = std_logging.getLogger(record.name)
        self._bridge.world.post(logger.handle, record)
        return False


def divert_library_records(bridge):
    """Move asyncio's and nats-py's loop-thread records to the caller."""
    diverter = _LoopRecordDiverter(bridge)
    for name in _LIBRARY_LOGGERS:
        std_logging.getLogger(name).addFilter(diverter)
