"""Per-client caps on open SSE streams and long-polls, across server processes.

Every open stream of a capped kind holds a *slot*: a member of a Redis sorted
set per (kind, client) whose score is the time the slot expires. Taking one
drops expired members, counts the rest and adds the new one in one Lua script
(atomic, one round trip); at the cap the client gets 429 JSON
(``too_many_streams``, ``too_many_polls``). The slot is given back when the
request ends. An SSE stream renews its slot from its heartbeat; a long-poll's
slot outlives its longest timeout. A process that dies without giving its
slots back frees them when they expire: two heartbeats and 5 s after the
last renewal for SSE (``sse_slot_ttl``), the longest poll and 30 s for a
long-poll (``poll_slot_ttl``). A renewal re-adds a slot Redis lost (a
restart), so the count recovers within one heartbeat.

The client is the signed-in user, else the client address
(``booktime.clientip.client_address``: ``X-Forwarded-For`` only from
``TRUSTED_PROXIES``). With the in-memory channel layer (one process), or while
Redis does not answer, slots are counted in this process only (``local``);
the outage is logged once.

A released shared slot is kept for ``REUSE_SECONDS`` before it is given back
in Redis, and the same client's next stream of that kind in this process
takes it over without a round trip: a long-poll client polls again as soon as
an answer arrives, and took and gave back a slot in Redis for every poll
(profiled: 12 % of a long-poll's server time, docs/performance.md). The kept
slot still counts against the client, so the cap never loosens; a client
that stops polling has it back within ``REUSE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from booktime.clientip import client_address

logger = logging.getLogger(__name__)

# Slots held in this process while the count is not shared, by kind then client.
local: dict[str, Counter[str]] = {"sse": Counter(), "poll": Counter()}

# KEYS[1]: the set. ARGV: now, expires at, cap, member, key TTL (s). 1 = taken.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
# Released shared slots kept for reuse, per event loop: (kind, client) -> slots.
_kept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], list[Slot]]] = (
    weakref.WeakKeyDictionary()
)
REUSE_SECONDS = 2.0
_down = False
_pending_releases: set[asyncio.Task] = set()


def sse_slot_ttl() -> int:
    """An SSE slot lives two heartbeats (plus slack) past its last renewal."""
    return 2 * settings.STREAM_HEARTBEAT_SECONDS + 5


def poll_slot_ttl() -> int:
    """A long-poll slot outlives the longest poll (plus time to backfill)."""
    return settings.LONGPOLL_MAX_TIMEOUT + 30


@dataclass
class Slot:
    """One open stream's place in its client's count."""

    kind: str  # "sse" or "poll"
    client: str  # "user:<id>" or "addr:<ip>"
    member: str  # unique per stream
    shared: bool  # counted in Redis (else in ``local``)
    expires_at: float = 0.0  # when Redis drops it unless renewed (shared slots)
    giving_back: asyncio.TimerHandle | None = None  # kept for reuse until this fires

    @property
    def key(self) -> str:
        return slot_key(self.kind, self.client)


def slot_key(kind: str, client: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:slots:{kind}:{client}"


def client_of(scope: dict[str, Any], user_id: Any = None) -> str:
    """Whom a request counts against: its user (``user_id``, the consumer's
    resolved principal, else a resolved ``scope["user"]``), else its address."""
    if user_id is not None:
        return f"user:{user_id}"
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"addr:{client_address(scope)}"


def shared_counting() -> bool:
    return settings.CHANNEL_LAYER != "memory"


def _redis() -> tuple[Any, Any]:
    """(this event loop's Redis client, the take script registered on it)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        found = _clients[loop] = (client, client.register_script(_TAKE))
    return found


def _failed(exc: Exception) -> None:
    global _down
    if not _down:
        _down = True
        logger.warning("Redis unreachable (%s); stream caps count per process for now", exc)


def _answered() -> None:
    global _down
    if _down:
        _down = False
        logger.warning("Redis reachable again; stream caps count across processes")


async def take(
    kind: str, scope: dict[str, Any], cap: int, ttl: int, user_id: Any = None
) -> Slot | None:
    """A slot for a new stream of ``kind``, or None if its client holds ``cap`` already."""
    client = client_of(scope, user_id)
    kept_slots = _kept_slots()
    kept = kept_slots.get((kind, client))
    if kept:
        slot = kept.pop()
        if not kept:
            del kept_slots[(kind, client)]
        if slot.giving_back is not None:
            slot.giving_back.cancel()
            slot.giving_back = None
        if slot.expires_at - time.time() < ttl / 2:
            await renew(slot, ttl)
        return slot
    slot = Slot(kind, client, uuid.uuid4().hex, shared=shared_counting())
    if slot.shared:
        now = time.time()
        slot.expires_at = now + ttl
        try:
            taken = await _redis()[1](
                keys=[slot.key], args=[now, now + ttl, cap, slot.member, ttl + 60]
            )
        except Exception as exc:  # noqa: BLE001 - Redis down: count in this process
            _failed(exc)
            slot.shared = False
        else:
            _answered()
            return slot if taken == 1 else None
    counts = local[kind]
    if counts[slot.client] >= cap:
        return None
    counts[slot.client] += 1
    return slot


async def renew(slot: Slot, ttl: int) -> None:
    """Push a shared slot's expiry ``ttl`` seconds out, re-adding it if Redis
    lost it (SSE heartbeat; the heartbeat stops before the slot is released)."""
    if not slot.shared:
        return
    slot.expires_at = time.time() + ttl
    try:
        async with _redis()[0].pipeline(transaction=False) as pipe:
            pipe.zadd(slot.key, {slot.member: slot.expires_at})
            pipe.expire(slot.key, ttl + 60)
            await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the slot expires on its own
        _failed(exc)


def release(slot: Slot) -> None:
    """Give the slot back: at once in this process; a shared one is kept for
    ``REUSE_SECONDS`` (see the module docstring), then given back in Redis."""
    if not slot.shared:
        counts = local[slot.kind]
        counts[slot.client] -= 1
        if counts[slot.client] <= 0:
            del counts[slot.client]
        return
    kept = _kept_slots().setdefault((slot.kind, slot.client), [])
    kept.append(slot)
    slot.giving_back = asyncio.get_running_loop().call_later(REUSE_SECONDS, _give_back, slot)


def _kept_slots() -> dict[tuple[str, str], list[Slot]]:
    return _kept.setdefault(asyncio.get_running_loop(), {})


def _give_back(slot: Slot) -> None:
    """Nobody took the kept slot over: give it back in Redis."""
    slot.giving_back = None
    kept_slots, key = _kept_slots(), (slot.kind, slot.client)
    kept = [other for other in kept_slots.get(key, ()) if other is not slot]
    if kept:
        kept_slots[key] = kept
    else:
        kept_slots.pop(key, None)
    task = asyncio.get_running_loop().create_task(_release_shared(slot))
    _pending_releases.add(task)
    task.add_done_callback(_pending_releases.discard)


async def _release_shared(slot: Slot) -> None:
    try:
        await _redis()[0].zrem(slot.key, slot.member)
    except Exception as exc:  # noqa: BLE001 - the slot expires on its own
        _failed(exc)
