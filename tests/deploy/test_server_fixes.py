"""autobahn's per-connection configuration dump is made only when logged
(``booktime.server_fixes``), through autobahn's real server protocol on a
twisted test transport; the real handshakes are the live tests'."""

from __future__ import annotations

import pprint
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import Timings
from twisted.internet.testing import StringTransport

from booktime.server_fixes import DeferredPformat, defer_handshake_config_dump


@pytest.fixture
def pformat_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``PrettyPrinter.pformat`` call, the work autobahn's dump does."""
    calls: list[Any] = []
    original = pprint.PrettyPrinter.pformat

    def counting(self: pprint.PrettyPrinter, value: Any) -> str:
        calls.append(value)
        return original(self, value)

    monkeypatch.setattr(pprint.PrettyPrinter, "pformat", counting)
    return calls


def open_connection() -> WebSocketServerProtocol:
    factory = WebSocketServerFactory("ws://127.0.0.1:9")
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    return protocol


def test_a_new_connection_formats_no_configuration_when_debug_is_off(
    pformat_calls: list[Any],
) -> None:
    defer_handshake_config_dump()
    protocol = open_connection()
    assert protocol.log.debug.__name__ == "_no_op"  # the line is not written
    assert protocol.openHandshakeTimeout == WebSocketServerFactory("ws://x:9").openHandshakeTimeout
    assert pformat_calls == []


def test_the_dump_and_the_timings_are_still_text_when_written(pformat_calls: list[Any]) -> None:
    defer_handshake_config_dump()
    attrs = [("openHandshakeTimeout", 5, "WebSocketServerFactory")]
    deferred = DeferredPformat(attrs)
    assert pformat_calls == []
    assert f"\n{deferred}" == "\n" + pprint.pformat(attrs)
    timings = Timings()
    timings.track("onOpen")
    assert isinstance(str(timings), str) and "onOpen" in str(timings)
