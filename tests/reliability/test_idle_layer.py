"""Idle costs nothing with CHANNEL_LAYER=redis, and stays live (issue 12, section 7).

A real daphne on ``RedisChannelLayer`` with ``CHANNEL_LAYER_GROUP_EXPIRY=4``
holds an idle WebSocket and an idle SSE subscription well past the group
expiry and past the layer's 5 s blocking receive. Meanwhile:

- no retry loop: the server log has no "receive failed" / "Timeout reading"
  line (redis-py's default 5 s socket timeout used to cut every idle
  BZPOPMIN short, which the consumer handled as an outage) and no re-read of
  the event log (``notifications.log`` logs each read at DEBUG);
- the memberships are refreshed (their scores in Redis move on, while
  nothing was re-read) — the streams' groups and the principal's access
  group (``notifications.access``) alike — so they never expire under an open
  stream;
- no deafness: a change made after the expiry reaches both clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from notifications.access import user_group
from orders.actions import transition_order
from tests.support.fixtures import use_redis_layer
from tests.support.live import async_wait_until, ws_connect, ws_recv, ws_recv_until, ws_send
from tests.support.sse import sse_frames

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

GROUP_EXPIRY = 4
IDLE_AT_LEAST = 8  # seconds: past the 5 s blocking receive and twice the expiry
RETRY_LOOP = ("receive failed", "Timeout reading", "catch-up", "re-joining")


@pytest.fixture
def redis_layer(settings: Any, redis_url: str, channel_layer_prefix: str) -> None:
    """This process publishes on the same RedisChannelLayer as the server."""
    use_redis_layer(
        settings,
        redis_url,
        channel_layer_prefix,
        backend="channels_redis.core.RedisChannelLayer",
        host={
            "socket_connect_timeout": 2,
            "socket_timeout": settings.CHANNEL_LAYER_SOCKET_TIMEOUT,
        },
        group_expiry=GROUP_EXPIRY,
    )


async def membership_scores(redis_url: str, prefix: str, group: str) -> list[float]:
    """When each member of ``group`` last joined it (RedisChannelLayer's sorted set)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        members = await client.zrange(f"{prefix}:group:{group}", 0, -1, withscores=True)
        return [score for _, score in members]
    finally:
        await client.aclose()


@pytest.mark.usefixtures("redis_layer")
async def test_an_idle_subscription_causes_no_retry_loop_and_stays_live(
    start_daphne: Any,
    alice: Any,
    make_order: Any,
    login_cookies: Any,
    redis_url: str,
    channel_layer_prefix: str,
) -> None:
    server = start_daphne(
        "idle",
        CHANNEL_LAYER="redis",
        CHANNEL_LAYER_GROUP_EXPIRY=str(GROUP_EXPIRY),
        LOG_LEVEL="DEBUG",
    )
    order = await sync_to_async(make_order)(alice, "paid")
    cookies = await sync_to_async(login_cookies)(alice)
    stream, group = f"order:{order.pk}", f"order.{order.pk}"
    access_group = user_group(alice.pk)

    async with (
        await ws_connect(server, cookies=cookies) as ws,
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=60) as http,
        http.stream("GET", f"/events/stream/?stream={stream}") as sse,
    ):
        assert sse.status_code == 200
        sse_events = sse_frames(sse.aiter_lines())
        await ws_send(ws, {"action": "subscribe", "stream": stream})
        assert (await ws_recv(ws))["type"] == "subscribed"
        subscribed_at = time.time()

        def log_text() -> str:
            return server.log_path.read_text(errors="replace")

        # Each subscription reads the log once (its backfill); then it idles.
        await async_wait_until(
            lambda: log_text().count("reading the event log") == 2,
            message="both subscriptions' backfill",
        )
        log_before_idle = log_text()

        async def refreshed_long_after_subscribing() -> bool:
            scores = await membership_scores(redis_url, channel_layer_prefix, group)
            # Alice's access group too (notifications.access): how a revocation reaches her.
            scores += await membership_scores(redis_url, channel_layer_prefix, access_group)
            return len(scores) == 4 and min(scores) >= subscribed_at + IDLE_AT_LEAST

        # Idle until both memberships were refreshed IDLE_AT_LEAST s after joining.
        await async_wait_until(
            refreshed_long_after_subscribing,
            timeout=IDLE_AT_LEAST + 10,
            message=f"memberships refreshed {IDLE_AT_LEAST} s after subscribing",
        )
        idle_log = log_text()[len(log_before_idle) :]
        assert not [line for line in idle_log.splitlines() if any(s in line for s in RETRY_LOOP)]
        assert "reading the event log" not in idle_log, idle_log
        assert "Traceback" not in idle_log

        # Past the expiry, a change still arrives on both transports.
        await sync_to_async(transition_order)(order.pk, "packed")
        frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=10)
        assert frame["event"]["order"]["status"] == "packed"

        async def next_sse_event() -> Any:
            async for found in sse_events:
                if found.event.startswith("order."):
                    return found.json()
            return None

        sent = await asyncio.wait_for(next_sse_event(), 10)
        assert sent["order"]["status"] == "packed"
