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


"""JSON from untrusted peers, parsed within bounds of size and depth.

The tools read JSON that anyone allowed to publish on their inbox, or to
write the registry, may have written: service replies, server replies,
registry records. Python's ``json`` recurses once per nesting level, so
a body nested 200,000 deep raises ``RecursionError`` from deep inside
the parser, and a body of hundreds of megabytes is parsed whole. Here a
body is refused before it is parsed when it is larger than its bound or
nested deeper than its bound (a scan that stops at the first level too
deep), and whatever the parser still rejects is a problem, never an
exception.
"""

import json
import re
from typing import Any, Optional, Tuple

# The default depth bound: df-nats' own documents nest a few levels.
MAX_DEPTH = 32

# A JSON string (escapes included) or one bracket: what the depth scan
# steps over, so that brackets inside strings are not counted.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENING = frozenset(b'[{')


def too_deep(data: bytes, max_depth: int) -> bool:
    """True when ``data`` nests arrays and objects deeper than allowed.

    Stops at the first bracket too deep. Fast when there are fewer
    brackets than the bound, whatever the body.
    """
    if data.count(b'[') + data.count(b'{') <= max_depth:
        return False
    depth = 0
    for match in _TOKENS.finditer(data):
        first = match.group()[0]
        if first in _OPENING:
            depth += 1
            if depth > max_depth:
                return True
        elif first != 0x22:   # a closing bracket, not a string
            depth -= 1
    return False


def loads(data, max_bytes: int, max_depth: int = MAX_DEPTH
          ) -> Tuple[Optional[Any], Optional[str]]:
    """``(value, None)``, or ``(None, problem)`` for what is refused.

    ``data`` is bytes (or str); the problem is a short text fit for a
    log line or a count by kind: ``too large``, ``too deep``, ``not
    JSON``.
    """
    if isinstance(data, str):
        data = data.encode('utf-8', 'surrogatepass')
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None, 'not JSON'
    data = bytes(data)
    if len(data) > max_bytes:
        return None, 'too large'
    if too_deep(data, max_depth):
        return None, 'too deep'
    try:
        return json.loads(data), None
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and integers of too many digits.
        return None, 'not JSON'
