"""URL routes for the streaming transports (mounted in booktime/asgi.py).

Each stream consumer accepts ``Authorization: Token`` (``TokenAuthMiddleware``);
Django's own views, the REST API included, authenticate for themselves.
"""

from __future__ import annotations

from typing import Any

from django.urls import path, re_path

from notifications.auth import TokenAuthMiddleware
from notifications.longpoll import LongPollConsumer
from notifications.sse import EventStreamConsumer
from notifications.websocket import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", TokenAuthMiddleware(LiveConsumer.as_asgi())),
]


def http_urlpatterns(django_app: Any) -> list[Any]:
    """SSE and long-poll first; Django's app last, catching everything else."""
    return [
        path("events/stream/", TokenAuthMiddleware(EventStreamConsumer.as_asgi())),
        path("events/poll/", TokenAuthMiddleware(LongPollConsumer.as_asgi())),
        re_path(r"", django_app),
    ]
