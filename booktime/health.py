"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers and Prometheus.

Mounted in front of everything else (``booktime/asgi.py``), so they pass no
session, authentication, throttle or host check, and log nothing:

- ``/healthz``: the process serves requests. No I/O. ``{"status": "ok"}``.
- ``/readyz``: the database and Redis answer, and the oldest unpublished
  event is younger than ``READY_MAX_PUBLISH_LAG_SECONDS``. 200
  ``{"status": "ready", "checks": {...}}`` or 503 ``{"status": "unready", ...}``
  naming what failed. A database query and a Redis PING, nothing more.
- ``/metrics``: Prometheus text (notifications/metrics.py) for a request
  with ``Authorization: Bearer <METRICS_TOKEN>``, or from an address in
  ``METRICS_ALLOWED_IPS`` (loopback by default) that did not come through a
  proxy (no ``X-Forwarded-For``/``X-Real-IP``); others get 403 JSON.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from booktime.errors import error_body

PATHS = ("/healthz", "/readyz", "/metrics")
_PROXY_HEADERS = (b"x-forwarded-for", b"x-real-ip", b"forwarded")


def health_routes(app: Any) -> Any:
    """Wrap the ASGI ``app``: the three paths here, everything else to ``app``."""

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in PATHS:
            await handle(scope, send)
        else:
            await app(scope, receive, send)

    return route


async def handle(scope: dict[str, Any], send: Any) -> None:
    path = scope["path"]
    if scope["method"] not in ("GET", "HEAD"):
        await respond(send, 405, error_body("method_not_allowed", "use GET"))
    elif path == "/healthz":
        await respond(send, 200, {"status": "ok"})
    elif path == "/readyz":
        checks = {
            "database": await database_sync_to_async(_database)(),
            # Its own thread: a Redis timeout must not hold up the database thread.
            "redis": await sync_to_async(_redis, thread_sensitive=False)(),
        }
        ready = all(check["ok"] for check in checks.values())
        await respond(
            send,
            200 if ready else 503,
            {"status": "ready" if ready else "unready", "checks": checks},
        )
    elif not metrics_allowed(scope):
        await respond(
            send,
            403,
            error_body("forbidden", "metrics need the bearer token or an internal address"),
        )
    else:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        import notifications.metrics  # noqa: F401 - registers the app's metrics

        body = await database_sync_to_async(generate_latest)(REGISTRY)
        await respond(send, 200, body, content_type=CONTENT_TYPE_LATEST.encode())


def _database() -> dict[str, Any]:
    from django.utils import timezone

    from orders.models import OrderEvent

    try:
        oldest = (
            OrderEvent.objects.filter(published_at__isnull=True)
            .order_by("id")
            .values_list("created_at", flat=True)
            .first()
        )
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        return {"ok": False, "error": type(exc).__name__}
    lag = 0.0 if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds())
    limit = settings.READY_MAX_PUBLISH_LAG_SECONDS
    result: dict[str, Any] = {"ok": lag < limit, "publish_lag_seconds": round(lag, 3)}
    if lag >= limit:
        result["error"] = f"oldest unpublished event is {lag:.0f} s old (limit {limit} s)"
    return result


_redis_client: Any = None


def _redis() -> dict[str, Any]:
    global _redis_client
    if settings.CHANNEL_LAYER == "memory":
        return {"ok": True, "skipped": "CHANNEL_LAYER=memory"}
    from booktime.redis_topology import sync_client

    if _redis_client is None:
        _redis_client = sync_client(timeout=1)
    try:
        _redis_client.ping()
    except Exception as exc:  # noqa: BLE001 - refused, timed out, no master known
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def metrics_allowed(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers", ()))
    token = settings.METRICS_TOKEN
    if token:
        given = headers.get(b"authorization", b"").decode("latin-1")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    if any(name in headers for name in _PROXY_HEADERS):
        return False
    client = (scope.get("client") or ("",))[0]
    return client in settings.METRICS_ALLOWED_IPS


async def respond(
    send: Any, status: int, body: Any, content_type: bytes = b"application/json"
) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
