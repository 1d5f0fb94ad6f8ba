"""Limits answer with clear errors on a real daphne, and the connection survives.

- WebSocket: the 51st subscription on one socket and a frame over 64 KiB get
  an error frame naming the limit; the socket keeps working. A frame far over
  the limit (1 MiB) is refused the same way, without closing the socket.
- Long-poll: one user holding LONGPOLL_MAX_PER_CLIENT polls gets 429 with the
  JSON error on the next; the slot comes back when a poll's client goes.
  Back-to-back polls reuse one slot, given back once the client stops.
- SSE: one user holding SSE_MAX_PER_CLIENT streams over two daphne processes
  gets 429 on the next, from either (the count is shared in Redis); a slot
  comes back when its stream ends, or expires when its process dies.
- REST: a user over their rate gets 429, the JSON error and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from tests.support.live import async_wait_until, ws_connect, ws_recv, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def still_answers(ws: Any) -> None:
    await ws_send(ws, {"action": "ping"})
    assert (await ws_recv(ws))["type"] == "pong"


async def test_the_subscription_after_the_last_allowed_gets_an_error_frame(
    daphne_server: Any, staff_user: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(staff_user)
    limit = settings.MAX_SUBSCRIPTIONS_PER_SOCKET
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        # Staff may follow any order id, existing or not: enough distinct streams.
        for n in range(1, limit + 1):
            await ws_send(ws, {"action": "subscribe", "stream": f"order:{n}"})
            assert (await ws_recv(ws))["type"] == "subscribed"
        await ws_send(ws, {"action": "subscribe", "stream": f"order:{limit + 1}"})
        error = await ws_recv(ws)
        assert error["type"] == "error"
        assert error["code"] == "too_many_subscriptions"
        assert str(limit) in error["message"]
        await still_answers(ws)
        # Unsubscribing frees a place.
        await ws_send(ws, {"action": "unsubscribe", "stream": "order:1"})
        assert (await ws_recv(ws))["type"] == "unsubscribed"
        await ws_send(ws, {"action": "subscribe", "stream": f"order:{limit + 1}"})
        assert (await ws_recv(ws))["type"] == "subscribed"


@pytest.mark.parametrize("size", [70_000, 1_000_000])
async def test_an_oversized_frame_gets_an_error_frame_and_the_socket_stays_open(
    daphne_server: Any, alice: Any, login_cookies: Any, size: int
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await ws.send(json.dumps({"action": "ping", "pad": "x" * size}))
        error = await ws_recv(ws)
        assert error["type"] == "error" and error["code"] == "too_large"
        assert str(settings.MAX_WEBSOCKET_FRAME_BYTES) in error["message"]
        await still_answers(ws)


async def test_a_user_holding_too_many_long_polls_gets_429_until_one_ends(
    start_daphne: Any, alice: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    server = start_daphne("polls", LONGPOLL_MAX_PER_CLIENT="3")
    url = "/events/poll/?stream=mine&timeout=30"
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=40) as client:
        held = [asyncio.ensure_future(client.get(url)) for _ in range(3)]

        async def refused() -> httpx.Response | None:
            lost = [n for n, poll in enumerate(held) if poll.done()]
            for n in lost:  # it raced a probe for the last slot and lost: again
                held[n] = asyncio.ensure_future(client.get(url))
            if lost:
                return None  # let it get there before the next probe
            # timeout=0: answered at once while a slot is free, so a probe
            # never holds a slot for long. A 429 means the three polls hold all.
            answer = await client.get("/events/poll/?stream=mine&timeout=0")
            return answer if answer.status_code == 429 else None

        answer = await async_wait_until(refused, timeout=10, message="a 429 for the 4th poll")
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert error["code"] == "too_many_polls" and "3" in error["message"]
        assert not any(poll.done() for poll in held)

        held[0].cancel()  # that client goes away: its slot comes back

        async def accepted() -> bool:
            return (await client.get("/events/poll/?stream=mine&timeout=0")).status_code == 200

        await async_wait_until(accepted, timeout=10, message="a freed long-poll slot")
        for poll in held[1:]:
            poll.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_back_to_back_polls_reuse_one_slot_which_is_given_back_after(
    daphne_server: Any, alice: Any, login_cookies: Any, redis_url: str
) -> None:
    """A client polling again at once takes over its last poll's slot (no
    Redis round trips per poll); once it stops, the slot is given back."""
    import redis.asyncio as aioredis

    from notifications.slots import slot_key

    cookies = await sync_to_async(login_cookies)(alice)
    key = slot_key("poll", f"user:{alice.pk}")
    store = aioredis.from_url(redis_url)
    try:
        seen: set[bytes] = set()
        async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies) as client:
            for _ in range(5):
                answer = await client.get("/events/poll/?stream=mine&timeout=0")
                assert answer.status_code == 200
                seen.update(await store.zrange(key, 0, -1))
        assert len(seen) == 1, f"each poll took a slot of its own: {seen}"

        async def given_back() -> bool:
            return await store.zcard(key) == 0

        await async_wait_until(given_back, timeout=10, message="the kept slot given back")
    finally:
        await store.aclose()


async def test_a_rest_client_over_its_rate_gets_429_with_retry_after(
    start_daphne: Any, alice: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    server = start_daphne("throttled", API_THROTTLE_USER="3/min")
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10) as client:
        for _ in range(3):
            assert (await client.get("/api/orders/")).status_code == 200
        answer = await client.get("/api/orders/")
    assert answer.status_code == 429
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "throttled"
    assert 0 < int(answer.headers["retry-after"]) <= 60


async def test_sse_streams_are_capped_per_user_across_processes(
    start_daphne: Any, alice: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    env = {"SSE_MAX_PER_CLIENT": "2", "STREAM_HEARTBEAT_SECONDS": "1"}
    first, second = start_daphne("sse-a", **env), start_daphne("sse-b", **env)
    url = "/events/stream/?stream=mine"
    async with (
        httpx.AsyncClient(base_url=first.url, cookies=cookies, timeout=20) as on_first,
        httpx.AsyncClient(base_url=second.url, cookies=cookies, timeout=20) as on_second,
        on_first.stream("GET", url) as held_on_first,
    ):
        assert held_on_first.status_code == 200
        async with on_second.stream("GET", url) as held_on_second:
            assert held_on_second.status_code == 200
            for client in (on_first, on_second):
                answer = await client.get(url)
                assert answer.status_code == 429
                assert answer.headers["content-type"] == "application/json"
                error = answer.json()["error"]
                assert error["code"] == "too_many_streams" and "2" in error["message"]

        # That stream ended: its slot comes back (for either process), as soon
        # as the server has seen the client go.
        async def hold(client: httpx.AsyncClient) -> httpx.Response | None:
            response = await client.send(client.build_request("GET", url), stream=True)
            if response.status_code == 200:
                return response
            await response.aclose()
            return None

        probe = await async_wait_until(
            lambda: hold(on_first), timeout=10, message="a freed SSE slot"
        )
        await probe.aclose()

        # A process that dies holding a slot frees it when the slot expires
        # (two heartbeats + 5 s) without its stream being given back.
        orphaned = await async_wait_until(
            lambda: hold(on_second), timeout=10, message="the probe's slot back"
        )
        assert (await on_first.get(url)).status_code == 429
        second.kill()
        probe = await async_wait_until(
            lambda: hold(on_first), timeout=20, message="the dead process's slot expiring"
        )
        await probe.aclose()
        with contextlib.suppress(httpx.HTTPError):
            await orphaned.aclose()
