"""The WebSocket origin check (booktime/origin.py), on real daphne processes.

Only the site's own origin — scheme, host *and* port, as the handshake
reached the server — and ``CSRF_TRUSTED_ORIGINS`` may open ``ws/live/``: a
cross-site page would otherwise ride on the visitor's session cookie. A
refused handshake gets HTTP 403 before any frame is exchanged. A handshake
without ``Origin`` is refused too (browsers always send one; so did
channels' ``AllowedHostsOriginValidator`` before).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.live import cookie_header, ws_connect, ws_recv, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# {port}: the server's own port; {other}: another port of the same host.
REFUSED = [
    "http://evil.example",
    "http://127.0.0.1.evil.example:{port}",  # an allowed host as a prefix of another
    "http://evil.example/?127.0.0.1",
    "http://127.0.0.1:{other}",  # same host, another port
    "https://127.0.0.1:{port}",  # same host and port, another scheme
    "http://127.0.0.1",  # same host, default port
    "http://localhost:{port}",  # another host, even one in ALLOWED_HOSTS
    "http://127.0.0.1:{port}/page",  # not an origin: a path
    "http://user@127.0.0.1:{port}",  # not an origin: credentials
    "null",  # sandboxed iframes, file:// pages
    None,  # no Origin header at all
]


async def assert_refused(server: Any, origin: str | None, **headers: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(server, origin, **headers)
    assert refused.value.response.status_code == 403


async def open_socket(server: Any, origin: str | None, **headers: str) -> Any:
    return await connect(
        server.ws_url + "/ws/live/",
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=10,
        close_timeout=2,
    )


async def assert_accepted(server: Any, origin: str, **headers: str) -> None:
    async with await open_socket(server, origin, **headers) as ws:
        await ws_send(ws, {"action": "ping"})
        assert (await ws_recv(ws))["type"] == "pong"


@pytest.mark.parametrize("origin", REFUSED)
async def test_a_handshake_from_another_origin_or_none_is_refused(
    daphne_server: Any, alice: Any, login_cookies: Any, origin: str | None
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    if origin is not None:
        origin = origin.format(port=daphne_server.port, other=daphne_server.port + 1)
    await assert_refused(daphne_server, origin, **cookie_header(cookies))


async def test_the_sites_own_origin_is_accepted(
    daphne_server: Any, alice: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    assert daphne_server.origin == f"http://127.0.0.1:{daphne_server.port}"
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "ping"})
        assert (await ws_recv(ws))["type"] == "pong"


async def test_csrf_trusted_origins_are_accepted_exactly(start_daphne: Any) -> None:
    server = start_daphne(
        "trusted-origins",
        CSRF_TRUSTED_ORIGINS="https://shop.example,https://*.example.org:8443",
    )
    await assert_accepted(server, "https://shop.example")
    await assert_accepted(server, "https://shop.example:443")
    await assert_accepted(server, "https://pay.example.org:8443")
    await assert_accepted(server, "https://example.org:8443")
    for origin in (
        "http://shop.example",  # scheme
        "https://shop.example:8443",  # port
        "https://www.shop.example",  # no wildcard for this one
        "https://pay.example.org",  # the wildcard's port is 8443
        "https://badexample.org:8443",  # a suffix is not a subdomain
    ):
        await assert_refused(server, origin)


async def test_https_from_a_trusted_proxy_only(start_daphne: Any) -> None:
    """Behind a TLS-terminating proxy the page's origin is https://: believed
    only when the peer is one of TRUSTED_PROXIES (SECURE_PROXY_SSL_HEADER)."""
    behind_proxy = start_daphne(
        "behind-proxy", TRUSTED_PROXIES="127.0.0.1", SECURE_PROXY_SSL_HEADER="1"
    )
    https_origin = f"https://127.0.0.1:{behind_proxy.port}"
    await assert_accepted(behind_proxy, https_origin, **{"X-Forwarded-Proto": "https"})
    await assert_refused(behind_proxy, https_origin)  # the proxy did not say https
    await assert_refused(
        behind_proxy, behind_proxy.origin, **{"X-Forwarded-Proto": "https"}
    )  # http:// page, https:// connection

    no_proxy = start_daphne("no-proxy", SECURE_PROXY_SSL_HEADER="1")
    await assert_refused(
        no_proxy, f"https://127.0.0.1:{no_proxy.port}", **{"X-Forwarded-Proto": "https"}
    )
    await assert_accepted(no_proxy, no_proxy.origin, **{"X-Forwarded-Proto": "https"})
