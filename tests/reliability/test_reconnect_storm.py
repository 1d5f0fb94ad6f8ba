"""A reconnect storm: 1,000 WebSocket clients drop and come back at once.

Every client of one daphne process (ten customers, each followed by 100
sockets: half on ``mine``, half on the customer's order) drops and
reconnects within about a second, each with its cursor, while orders
change. Each client must then hold exactly its own stream's events, once and
in order, and none of another customer's. The server's memory must come back
near its baseline once the clients have gone.

The baseline is taken after a warm-up round of 2,000 sockets — the storm's
peak (old and new connections overlap) — because CPython and glibc keep the
high-water mark a first round raises RSS to (about 95 to 150+ MiB on the 2-core
dev box; later rounds add 0-3 MiB, so that is not a leak). After the storm RSS
must be back within ``RSS_BOUND_MIB`` of that baseline once every client has
gone; a leak of a few KiB per connection would break it. Reconnecting all 1,000
(while ten orders change) takes about 4-6 s here.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import defaultdict

import psutil
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from notifications.log import latest_event_id
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import ResumingFollower, async_wait_until

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

CUSTOMERS = 10
CLIENTS = 1000
# Daphne may keep this much more resident memory than at its warmed-up
# baseline once every client has gone (see the module docstring).
RSS_BOUND_MIB = 30
# Open connections this many at a time at first; the storm itself is not batched.
CONNECT_BATCH = 100


def raise_open_file_limit(needed: int) -> None:
    """Let this process (and the daphne it starts, which inherits it) hold ``needed`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} sockets needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def rss_mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def client_connections(process: psutil.Process, port: int) -> list[object]:
    """Open client sockets of the server (its Redis connections aside)."""
    return [
        c
        for c in process.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    ]


def expected_ids(stream_orders: dict[str, list[int]], start: int) -> dict[str, list[int]]:
    return {
        stream: list(
            OrderEvent.objects.filter(order_id__in=orders, id__gt=start)
            .order_by("id")
            .values_list("id", flat=True)
        )
        for stream, orders in stream_orders.items()
    }


async def test_a_thousand_clients_reconnecting_at_once_all_resume_with_only_their_own_events(
    start_daphne, make_order, login_cookies
):
    raise_open_file_limit(CLIENTS * 2 + 256)
    users = await sync_to_async(
        lambda: [
            get_user_model().objects.create_user(f"storm{n}", password="storm-pw-1234")
            for n in range(CUSTOMERS)
        ]
    )()
    orders = [await sync_to_async(make_order)(user) for user in users]
    cookies = [await sync_to_async(login_cookies)(user) for user in users]
    start = await sync_to_async(latest_event_id)()
    server = start_daphne("storm")
    process = psutil.Process(server.process.pid)

    async def open_and_close_a_round(count: int = CLIENTS) -> None:
        round_ = [
            ResumingFollower(
                [server],
                "mine" if n % 2 else f"order:{orders[n % CUSTOMERS].pk}",
                cookies=cookies[n % CUSTOMERS],
                after=start,
            )
            for n in range(count)
        ]
        for batch in range(0, count, CONNECT_BATCH):
            group = [f.start() for f in round_[batch : batch + CONNECT_BATCH]]
            await asyncio.gather(*(f.wait_connected(timeout=60) for f in group))
        await asyncio.gather(*(f.stop() for f in round_))
        await async_wait_until(
            lambda: not client_connections(process, server.port),
            timeout=30,
            message="daphne to close the warm-up sockets",
        )

    # Warm-up (imports, thread pool, Python's and malloc's high-water mark) at
    # the storm's peak of 2 x CLIENTS sockets, then the baseline: what stays
    # above it afterwards is what the storm failed to give back.
    await open_and_close_a_round(2 * CLIENTS)
    baseline = rss_mib(process)

    followers: list[ResumingFollower] = []
    owner: dict[int, int] = {}  # follower index -> customer index
    stream_orders: dict[str, list[int]] = {}
    for n in range(CLIENTS):
        customer = n % CUSTOMERS
        # "mine" streams are per user, so key them by customer for the expectations.
        stream = "mine" if n % 2 == 0 else f"order:{orders[customer].pk}"
        key = f"{stream}#{customer}"
        stream_orders[key] = [orders[customer].pk]
        owner[n] = customer
        followers.append(ResumingFollower([server], stream, cookies=cookies[customer], after=start))

    def key_of(n: int) -> str:
        return f"{followers[n].stream}#{owner[n]}"

    async def change_all(status: str) -> None:
        for order in orders:
            await sync_to_async(transition_order)(order.pk, status)

    try:
        for batch in range(0, CLIENTS, CONNECT_BATCH):
            group = followers[batch : batch + CONNECT_BATCH]
            for follower in group:
                follower.start()
            await asyncio.gather(*(f.wait_connected(timeout=60) for f in group))
        peak_connected = rss_mib(process)

        await change_all("paid")
        paid = await sync_to_async(expected_ids)(stream_orders, start)
        await asyncio.gather(
            *(f.wait_for_ids(paid[key_of(n)], timeout=60) for n, f in enumerate(followers))
        )

        # The storm: every socket drops at once and reconnects with its cursor
        # while orders keep changing.
        began = time.monotonic()
        changes = asyncio.ensure_future(change_all("packed"))
        await asyncio.gather(*(f.drop() for f in followers))
        await changes
        await asyncio.gather(*(f.wait_connected(count=2, timeout=60) for f in followers))
        reconnect_seconds = time.monotonic() - began
        await change_all("shipped")

        expected = await sync_to_async(expected_ids)(stream_orders, start)
        await asyncio.gather(
            *(f.wait_for_ids(expected[key_of(n)], timeout=60) for n, f in enumerate(followers))
        )
        foreign: dict[int, list[int]] = defaultdict(list)
        for n, follower in enumerate(followers):
            received = [event["id"] for event in follower.received]
            assert received == expected[key_of(n)], (n, follower.stream)
            for event in follower.received:
                if event["order"]["id"] != orders[owner[n]].pk:
                    foreign[n].append(event["id"])
        assert not foreign, f"clients got other customers' events: {dict(foreign)}"
        peak = max(peak_connected, rss_mib(process))
    finally:
        await asyncio.gather(*(f.stop() for f in followers))

    # Every socket is closed on our side; the server lets go of them too.
    def settled() -> bool:
        return rss_mib(process) <= baseline + RSS_BOUND_MIB and not client_connections(
            process, server.port
        )

    await async_wait_until(
        settled,
        timeout=30,
        message=f"daphne RSS back under {baseline:.1f} + {RSS_BOUND_MIB} MiB "
        f"(now {rss_mib(process):.1f} MiB) with no connection left",
    )
    print(
        f"storm: {CLIENTS} clients reconnected in {reconnect_seconds:.2f} s; daphne RSS "
        f"baseline {baseline:.1f} MiB, peak {peak:.1f} MiB, after {rss_mib(process):.1f} MiB"
    )
