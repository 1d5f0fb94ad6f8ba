"""A released shared slot is kept for the same client's next stream and given
back after ``REUSE_SECONDS`` (notifications/slots.py), against the real Redis:
the count never loosens, and nothing is left behind per client."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from notifications import slots
from tests.support.live import async_wait_until

pytestmark = [pytest.mark.asyncio]

SCOPE = {"type": "http", "client": ("203.0.113.9", 1234), "headers": []}


async def test_a_kept_slot_is_taken_over_then_given_back_leaving_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots, "REUSE_SECONDS", 0.2)
    store = aioredis.from_url(redis_url)
    try:
        first = await slots.take("poll", SCOPE, 1, 60)
        assert first is not None
        key = first.key
        slots.release(first)
        # Kept: it still counts, so the cap of one holds for a different stream...
        assert await store.zcard(key) == 1
        second = await slots.take("poll", SCOPE, 1, 60)
        assert second is first  # ...and the same client takes it over
        assert (first.kind, first.client) not in slots._kept_slots()  # no empty entry left
        slots.release(second)

        async def given_back() -> bool:
            return await store.zcard(key) == 0

        await async_wait_until(given_back, timeout=5, message="the kept slot given back")
        assert not slots._kept_slots()
    finally:
        await store.aclose()
