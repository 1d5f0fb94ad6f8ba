"""Fixes to the libraries daphne serves with, applied by ``booktime.asgi``.

autobahn (daphne's WebSocket protocol) formats its whole configuration with
``pprint.pformat`` for a debug log line on every new WebSocket connection,
whether debug logging is on or not (``WebSocketProtocol._connectionMade``;
still so in autobahn 26.11.1): profiled, 10-11 % of a WebSocket connect's
server CPU (docs/performance.md, round 9). ``defer_handshake_config_dump``
makes that text only if the line is written. The bench's baseline applies it
too (``bench/baseline.py``): it is the server's cost, not the app's.
"""

from __future__ import annotations

import pprint
from typing import Any

from autobahn.websocket import protocol


class DeferredPformat:
    """``pprint.pformat(value)``, made when formatted into a log line."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    __repr__ = __str__


def _timings_text(timings: Any) -> str:
    return pprint.pformat(timings._timings)


def defer_handshake_config_dump() -> None:
    """Have autobahn's per-connection configuration dump made only when logged.

    The module's other use of the name, ``Timings.__str__``, must return text:
    it gets its own. Idempotent."""
    protocol.pformat = DeferredPformat
    protocol.Timings.__str__ = _timings_text
