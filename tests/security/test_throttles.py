"""Throttles that hold: across processes, against forged addresses and credential guessing.

Every test runs real daphne processes sharing the run's Redis, as a
deployment with several processes behind a proxy would:

- the anonymous REST limit is one budget across two processes, and a made-up
  ``X-Forwarded-For`` from an untrusted peer changes nothing; from a
  ``TRUSTED_PROXIES`` peer the forwarded client is honoured (right-most
  untrusted address: what the client wrote further left is ignored);
- unknown API tokens count per client address; past the limit any request
  bearing a token gets 429 with ``Retry-After`` before the token is looked
  up (REST and streams alike, on either process);
- sign-in (the site's and the admin's) is limited per username and per
  client address: a clear form error, 429 on the site's page;
- with the cache's Redis down, limits pause but requests still succeed.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from tests.support.fixtures import PASSWORD

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

THROTTLED_LOGIN = "Too many failed sign-in attempts"
# The failure limits count in fixed windows (booktime.throttles); a test that
# straddled the end of one (every 300 s by default) met a fresh counter
# halfway (seen once in CI). A day's window is one crossing in ~17,000 runs.
NO_WINDOW_END = {"AUTH_FAILURE_WINDOW_SECONDS": "86400"}


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "throttled"
    assert int(answer.headers["retry-after"]) > 0


async def get(server: Any, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.get(path, headers=headers)


# -- anonymous requests and X-Forwarded-For ------------------------------------------------


async def test_the_anonymous_limit_is_shared_by_processes_and_ignores_forged_addresses(
    start_daphne: Any,
) -> None:
    servers = [start_daphne(name, API_THROTTLE_ANON="6/min") for name in ("a", "b")]
    for n in range(6):
        # Refused (401) yet counted; a new made-up client address every time.
        answer = await get(servers[n % 2], "/api/products/", **{"X-Forwarded-For": f"10.9.8.{n}"})
        assert answer.status_code == 401, answer.text
    for server in servers:
        assert_throttled(await get(server, "/api/products/", **{"X-Forwarded-For": "10.1.1.1"}))
        assert_throttled(await get(server, "/api/schema/", Accept="application/json"))


async def test_a_trusted_proxys_forwarded_client_is_honoured(start_daphne: Any) -> None:
    env = {"API_THROTTLE_ANON": "3/min", "TRUSTED_PROXIES": "127.0.0.0/8"}
    servers = [start_daphne(name, **env) for name in ("proxied-a", "proxied-b")]
    for n in range(3):
        answer = await get(servers[n % 2], "/api/products/", **{"X-Forwarded-For": "203.0.113.7"})
        assert answer.status_code == 401
    for server in servers:
        assert_throttled(await get(server, "/api/products/", **{"X-Forwarded-For": "203.0.113.7"}))
        # What the client itself wrote sits left of what the proxy appended.
        forged = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        assert_throttled(await get(server, "/api/products/", **forged))
    # Another client behind the same proxy has a budget of its own.
    answer = await get(servers[0], "/api/products/", **{"X-Forwarded-For": "203.0.113.8"})
    assert answer.status_code == 401


# -- failed credentials ----------------------------------------------------------------------


async def test_token_guesses_are_limited_per_address_before_authentication(
    start_daphne: Any, alice: Any
) -> None:
    from rest_framework.authtoken.models import Token

    real = await sync_to_async(lambda: Token.objects.create(user=alice).key)()
    servers = [
        start_daphne(name, AUTH_FAILURES_PER_ADDRESS="3", **NO_WINDOW_END) for name in ("c", "d")
    ]
    guesses = [
        (servers[0], "/api/orders/"),
        (servers[1], "/events/poll/?stream=mine&timeout=0"),
        (servers[0], "/events/stream/?stream=mine"),
    ]
    for server, path in guesses:
        answer = await get(server, path, Authorization="Token not-a-real-token")
        assert answer.status_code == 401, (path, answer.status_code)
        assert answer.json()["error"]["code"] == "unauthenticated"
    for server in servers:
        # Past the limit even the right token waits: it is not looked at.
        assert_throttled(await get(server, "/api/orders/", Authorization=f"Token {real}"))
        assert_throttled(
            await get(server, "/events/poll/?stream=mine&timeout=0", Authorization=f"Token {real}")
        )
    # Requests without a token are not held back by the failure limit.
    answer = await get(servers[1], "/events/poll/?stream=mine&timeout=0")
    assert answer.status_code == 401


async def test_a_valid_token_is_not_counted(start_daphne: Any, alice: Any) -> None:
    from rest_framework.authtoken.models import Token

    real = await sync_to_async(lambda: Token.objects.create(user=alice).key)()
    server = start_daphne("valid-token", AUTH_FAILURES_PER_ADDRESS="2", **NO_WINDOW_END)
    for _ in range(4):
        answer = await get(server, "/api/orders/", Authorization=f"Token {real}")
        assert answer.status_code == 200


# -- sign-in ---------------------------------------------------------------------------------


async def sign_in(
    server: Any, username: str, password: str, path: str = "/login/", **headers: str
) -> httpx.Response:
    """A browser's sign-in: the form (CSRF cookie and field), then the POST."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=headers) as client:
        form = await client.get(path)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert match, form.text[:500]
        return await client.post(
            path,
            data={
                "csrfmiddlewaretoken": match.group(1),
                "username": username,
                "password": password,
                "next": "/",
            },
        )


async def test_sign_in_is_limited_per_username(
    start_daphne: Any, alice: Any, bob: Any, staff_user: Any
) -> None:
    servers = [
        start_daphne(name, LOGIN_FAILURES_PER_USERNAME="3", **NO_WINDOW_END) for name in ("e", "f")
    ]
    for n in range(3):
        answer = await sign_in(servers[n % 2], "alice", "wrong-password")
        assert answer.status_code == 200
        assert "didn&#x27;t match" in answer.text or "didn't match" in answer.text
    for server in servers:
        refused = await sign_in(server, "alice", PASSWORD)  # the right password, too late
        assert refused.status_code == 429
        assert THROTTLED_LOGIN in refused.text
        assert int(refused.headers["retry-after"]) > 0
    # Other users from the same address may still sign in.
    assert (await sign_in(servers[0], "bob", PASSWORD)).status_code == 302
    # The admin's sign-in is held to the same limit.
    admin = await sign_in(servers[1], "alice", PASSWORD, path="/admin/login/")
    assert THROTTLED_LOGIN in admin.text


async def test_sign_in_is_limited_per_client_address(
    start_daphne: Any, alice: Any, staff_user: Any
) -> None:
    server = start_daphne(
        "login-address",
        LOGIN_FAILURES_PER_ADDRESS="3",
        LOGIN_FAILURES_PER_USERNAME="100",
        TRUSTED_PROXIES="127.0.0.1",
        **NO_WINDOW_END,
    )
    here = {"X-Forwarded-For": "203.0.113.20"}
    for username in ("nobody-1", "nobody-2", "staff"):
        assert (await sign_in(server, username, "guess", **here)).status_code == 200
    refused = await sign_in(server, "alice", PASSWORD, **here)
    assert refused.status_code == 429 and THROTTLED_LOGIN in refused.text
    admin = await sign_in(server, "staff", PASSWORD, path="/admin/login/", **here)
    assert THROTTLED_LOGIN in admin.text
    # Another client address (behind the trusted proxy) is not held back.
    elsewhere = {"X-Forwarded-For": "203.0.113.21"}
    assert (await sign_in(server, "alice", PASSWORD, **elsewhere)).status_code == 302
    admin = await sign_in(server, "staff", PASSWORD, path="/admin/login/", **elsewhere)
    assert admin.status_code == 302


# -- the cache's Redis down --------------------------------------------------------------------


async def test_limits_pause_but_requests_succeed_while_the_cache_is_down(
    start_daphne: Any, private_redis: Any, alice: Any, login_cookies: Any
) -> None:
    server = start_daphne("cache-down", REDIS_URL=private_redis.url, API_THROTTLE_USER="2/min")
    cookies = await sync_to_async(login_cookies)(alice)
    private_redis.stop()
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10) as client:
        for _ in range(4):  # over the limit, but nothing can count it
            assert (await client.get("/api/orders/")).status_code == 200
    assert (await get(server, "/api/products/")).status_code == 401
