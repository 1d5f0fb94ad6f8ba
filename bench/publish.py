"""Commit → Redis, timed in one process: ``python -m bench.publish [--events N]``.

What every order save does after its commit, before any server can hear of
it: the on-commit publish (``notifications.publish``) on the default pubsub
layer. N status changes are committed one after the other on a fresh SQLite
database; a Redis subscriber in the same process notes when each event
reaches each of its three groups (``order.<id>``, ``customer.<uid>``,
``staff.orders``), from the commit (an ``on_commit`` callback registered
before the change, as the bench's driver stamps it). Then the same three
messages published the way the bench's baseline does (one pipeline, no
database) give the floor. A private redis-server; no daphne, no clients
(docs/performance.md, round 6).

Prints one line per group and one for the floor: the median and the 90th
percentile in milliseconds; then the CPU an order change costs the process
that makes it (a shop's web process): the change, its commit and every
on-commit hook (the publish; the e-mail, push and webhook rows), the process's
CPU time over the changes divided by their number (the subscriber thread's
share included: three messages per change).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.fresh import migrated_database, placed_orders

GROUPS = ("order", "customer", "staff")
SETTLE_SECONDS = 0.5  # how long to wait for one event's three messages


def _setup(directory: str, redis_url: str, orders: int) -> list[int]:
    """A migrated database with ``orders`` placed orders (each its own customer)."""
    migrated_database(
        f"{directory}/publish.sqlite3",
        CHANNEL_LAYER="pubsub",
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX="bench-publish",
    )
    return [order.pk for order in placed_orders([f"publish-{i}" for i in range(orders)])]


class Arrivals:
    """A Redis subscriber thread: when each message reached which group."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        import redis

        self.pubsub = redis.Redis.from_url(redis_url).pubsub()
        self.pubsub.psubscribe(pattern)
        self.pubsub.get_message(timeout=5)  # the subscription's confirmation
        self.seen: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while self.running:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                with self.changed:
                    self.seen.append((time.time(), message["channel"].decode()))
                    self.changed.notify_all()

    def take(self, count: int) -> list[tuple[float, str]]:
        """Wait for ``count`` messages (at most SETTLE_SECONDS), return and forget them."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.seen) >= count, SETTLE_SECONDS)
            seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.pubsub.close()


def _group(channel: str) -> str:
    return next(g for g in GROUPS if f"__group__{g}" in channel or f":{g}" in channel)


def _time_commits(order_ids: list[int], arrivals: Arrivals) -> tuple[dict[str, list[float]], float]:
    """Each group's commit -> Redis times (ms), and the process's CPU per change (ms)."""
    from django.db import transaction

    from orders.actions import transition_order

    spent: dict[str, list[float]] = {group: [] for group in GROUPS}
    began = time.process_time()
    for status in ("paid", "packed", "shipped"):
        for order_id in order_ids:
            stamp: list[float] = []
            with transaction.atomic():
                transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
                transition_order(order_id, status)
            for at, channel in arrivals.take(3):
                spent[_group(channel)].append((at - stamp[0]) * 1000)
    cpu_ms = (time.process_time() - began) * 1000 / (3 * len(order_ids))
    return spent, cpu_ms


def _time_floor(redis_url: str, events: int, arrivals: Arrivals) -> list[float]:
    import redis

    client = redis.Redis.from_url(redis_url)
    payload = "x" * 300
    spent = []
    for _ in range(events):
        began = time.time()
        pipe = client.pipeline(transaction=False)
        for group in ("order.1", "customer.1", "staff.orders"):
            pipe.publish(f"bench-floor:{group}", payload)
        pipe.execute()
        first = arrivals.take(3)
        if first:
            spent.append((first[0][0] - began) * 1000)
    client.close()
    return spent


def _line(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"{label:36}: p50 {statistics.median(ordered):5.2f} ms, p90 {p90:5.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="status changes to commit")
    args = parser.parse_args()
    from devtools.redis_server import start_private_redis

    redis = start_private_redis()
    orders = max(1, -(-args.events // 3))
    closers: list[Callable[[], Any]] = [redis.close]
    try:
        with tempfile.TemporaryDirectory(prefix="booktime-publish-") as directory:
            order_ids = _setup(directory, redis.url, orders)
            arrivals = Arrivals(redis.url, "bench-*")
            closers.insert(0, arrivals.close)
            spent, cpu_ms = _time_commits(order_ids, arrivals)
            floor = _time_floor(redis.url, args.events, arrivals)
            for group in GROUPS:
                print("publish " + _line(f"commit -> Redis, {group} group", spent[group]))
            print("publish " + _line("floor: one pipeline, no database", floor))
            print(f"publish {'CPU per order change, all hooks':36}: {cpu_ms:5.2f} ms")
    finally:
        for close in closers:
            close()


if __name__ == "__main__":
    main()
