"""/healthz, /readyz and /metrics on a real daphne process, and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from booktime.logging import JsonFormatter, RequestIdFilter, RequestIdMiddleware, request_id
from orders.models import OrderEvent

pytestmark = [pytest.mark.live]


def test_healthz_and_readyz_answer_json_without_credentials(daphne_server: Any) -> None:
    health = httpx.get(daphne_server.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(daphne_server.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks["database"]["publish_lag_seconds"] == 0


def test_readyz_fails_while_an_old_event_is_unpublished(
    daphne_server: Any, alice: Any, make_order: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    order = make_order(alice)
    OrderEvent.objects.filter(order=order).update(
        published_at=None, created_at=timezone.now() - timedelta(hours=1)
    )
    ready = httpx.get(daphne_server.url + "/readyz", timeout=5)
    assert ready.status_code == 503
    database = ready.json()["checks"]["database"]
    assert not database["ok"] and database["publish_lag_seconds"] >= 3600
    assert "oldest unpublished event" in database["error"]


def test_readyz_fails_when_redis_does_not_answer(start_daphne: Any, private_redis: Any) -> None:
    server = start_daphne(name="no-redis", REDIS_URL=private_redis.url)
    private_redis.stop()
    ready = httpx.get(server.url + "/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False


def test_metrics_from_loopback_or_with_the_token_only(start_daphne: Any, alice: Any) -> None:
    server = start_daphne(name="metrics", METRICS_TOKEN="s3cret-token")
    # A stream open, so the gauges have something to say.
    with httpx.stream(
        "GET", server.url + "/events/poll/", params={"stream": "staff"}, timeout=5
    ) as refused:
        assert refused.status_code == 401
    text = httpx.get(server.url + "/metrics", timeout=5).text
    for name in (
        "booktime_connections_open",
        "booktime_subscriptions",
        "booktime_deliveries_total",
        "booktime_slow_clients_cut_off_total",
        "booktime_websocket_handshakes_total",
        "booktime_resets_total",
        "booktime_layer_recoveries_total",
        "booktime_publish_lag_seconds_bucket",
        "booktime_unpublished_events",
        "booktime_longpolls_held",
        'booktime_gc_pause_seconds_count{generation="0"}',
    ):
        assert name in text, name
    proxied = httpx.get(server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    assert proxied.json()["error"]["code"] == "forbidden"
    with_token = httpx.get(
        server.url + "/metrics",
        headers={"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer s3cret-token"},
    )
    assert with_token.status_code == 200


def test_health_requests_are_not_logged(start_daphne: Any) -> None:
    server = start_daphne(name="quiet", LOG_LEVEL="INFO", LOG_FORMAT="json")
    for path in ("/healthz", "/readyz"):
        assert httpx.get(server.url + path, timeout=5).status_code == 200
    app_lines = [line for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert not [line for line in app_lines if "healthz" in line or "readyz" in line]


@pytest.mark.asyncio
async def test_json_log_lines_carry_the_request_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("booktime.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        logger.info("inside %s", scope["path"])

    try:
        scope = {"type": "http", "path": "/x", "headers": [(b"x-request-id", b"abc-123")]}
        await RequestIdMiddleware(app)(scope, None, None)
        await RequestIdMiddleware(app)(
            {"type": "websocket", "path": "/ws", "headers": []}, None, None
        )
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "inside /x" and first["request_id"] == "abc-123"
    assert first["level"] == "INFO" and first["logger"] == "booktime.test-json"
    assert len(second["request_id"]) == 32  # a fresh id for the connection
    assert third["request_id"] == "-" and request_id.get() is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_publish_lag_is_observed(alice: Any, make_order: Any) -> None:
    from notifications.metrics import PUBLISH_LAG

    before = PUBLISH_LAG._sum.get()  # noqa: SLF001
    count_before = sum(b.get() for b in PUBLISH_LAG._buckets)  # noqa: SLF001
    await sync_to_async(make_order)(alice, "paid")
    assert sum(b.get() for b in PUBLISH_LAG._buckets) > count_before  # noqa: SLF001
    assert PUBLISH_LAG._sum.get() >= before  # noqa: SLF001
