"""Prometheus metrics of one server process (served at ``/metrics``, booktime/health.py).

Every metric is registered here, in prometheus-client's default registry
(which also carries the process's CPU, memory and file descriptors). The
consumers and the publisher call the small functions below, one line each;
nothing here touches the network or blocks. Each daphne process serves its
own numbers: scrape every process (README, "Deploying").
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

# Consumer class -> transport label.
TRANSPORTS = {
    "LiveConsumer": "websocket",
    "EventStreamConsumer": "sse",
    "LongPollConsumer": "longpoll",
}

CONNECTIONS = Gauge(
    "booktime_connections_open", "Open streaming connections, by transport", ["transport"]
)
SUBSCRIPTIONS = Gauge("booktime_subscriptions", "Streams followed, by stream kind", ["kind"])
DELIVERIES = Counter(
    "booktime_deliveries", "Events written to clients (backfill and live)", ["transport"]
)
CUT_OFF = Counter(
    "booktime_slow_clients_cut_off", "Clients cut off because they stopped reading", ["transport"]
)
HANDSHAKES = Counter("booktime_websocket_handshakes", "WebSocket handshakes accepted")
RESETS = Counter("booktime_resets", "reset answers: a cursor the log cannot serve", ["transport"])
LAYER_RECOVERIES = Counter(
    "booktime_layer_recoveries", "Redis restarts/outages/failovers the watchdog recovered from"
)
PUBLISH_LAG = Histogram(
    "booktime_publish_lag_seconds",
    "From an event's commit to its publication on the channel layer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GC_PAUSES = Histogram(
    "booktime_gc_pause_seconds",
    "Python's cyclic garbage collections, by generation; each one stops the event loop",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DATABASE_TRIPS = Counter(
    "booktime_database_trips",
    "Trips the streaming consumers made to the database thread (notifications.hops)",
)
DATABASE_TRIP_CALLS = Counter(
    "booktime_database_trip_calls",
    "Calls those trips carried: calls / trips is how many shared a trip under load",
)
LONGPOLLS_HELD = Gauge("booktime_longpolls_held", "Long-poll requests held open")
UNPUBLISHED = Gauge("booktime_unpublished_events", "Events committed but not yet published")


@functools.cache
def _child(metric: Any, label: str) -> Any:
    """``metric.labels(label)``, looked up once: ``labels()`` takes a lock and
    checks its arguments on every call (profiled: 2 of the 3 % of a WebSocket
    delivery's server CPU spent counting it). Label values are a handful of
    fixed strings."""
    return metric.labels(label)


def transport(consumer: Any) -> str:
    return TRANSPORTS.get(type(consumer).__name__, "other")


def stream_kind(subscription: Any) -> str:
    """``order:42`` -> ``order``; ``mine``, ``staff`` as they are."""
    return subscription.stream.split(":", 1)[0]


def connection_opened(consumer: Any) -> None:
    _child(CONNECTIONS, transport(consumer)).inc()


def connection_closed(consumer: Any) -> None:
    _child(CONNECTIONS, transport(consumer)).dec()


def subscribed(subscription: Any) -> None:
    _child(SUBSCRIPTIONS, stream_kind(subscription)).inc()


def unsubscribed(followed: Any | None) -> None:
    """``followed``: the ``Followed`` just dropped, or None if there was none."""
    if followed is not None:
        _child(SUBSCRIPTIONS, stream_kind(followed.subscription)).dec()


def delivered(consumer: Any, count: int) -> None:
    _child(DELIVERIES, transport(consumer)).inc(count)


def cut_off(consumer: Any) -> None:
    _child(CUT_OFF, transport(consumer)).inc()


def reset(consumer: Any) -> None:
    _child(RESETS, transport(consumer)).inc()


def database_trip(calls: int) -> None:
    DATABASE_TRIPS.inc()
    DATABASE_TRIP_CALLS.inc(calls)


def published(events: Iterable[Any]) -> None:
    """Observe commit -> published for events just marked published."""
    now = timezone.now()
    for event in events:
        PUBLISH_LAG.observe(max(0.0, (now - event.created_at).total_seconds()))


def watch_collections() -> None:
    """Time every cyclic garbage collection of this process into ``GC_PAUSES``
    (from ``booktime.asgi``; once per process). The event loop stands still for
    each one: under a reconnect storm, before round 7 of docs/performance.md,
    full collections took 140-220 ms each. Each generation's series is there
    from the start, at zero: with young passes every ``GC_YOUNG_THRESHOLD``
    allocations a process may not have collected yet."""
    for generation in range(len(gc.get_threshold())):
        _child(GC_PAUSES, str(generation))
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


_collection_started = [0.0]


def _on_collection(phase: str, info: dict[str, int]) -> None:
    # A collection starts wherever an allocation triggers it, also a frame
    # short of the recursion limit (a hostile request's deep nesting being
    # refused); Python prints a callback's exception to stderr. Then this
    # pause goes unrecorded.
    try:
        if phase == "start":
            _collection_started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - _collection_started[0]
            _child(GC_PAUSES, str(info["generation"])).observe(pause)
    except RecursionError:
        pass


def _unpublished_count() -> float:
    """Read at scrape time (``/metrics`` collects in a thread that may query)."""
    from orders.models import OrderEvent

    try:
        return float(OrderEvent.objects.filter(published_at__isnull=True).count())
    except Exception:  # noqa: BLE001 - database down: the gauge says "unknown"
        return float("nan")


UNPUBLISHED.set_function(_unpublished_count)
