"""ASGI entry point: HTTP (Django + the SSE/long-poll consumers) and WebSocket.

Both protocols go through the session/auth middleware, and the stream routes
also accept a DRF ``Authorization: Token`` header (notifications.auth,
notifications.routing), so every transport sees the same ``scope["user"]``;
WebSocket handshakes must also come from an allowed origin: scheme, host and
port (booktime.origin). On HTTP the user is looked up lazily, by the SSE or
long-poll consumer's one database hop (notifications.auth.LazyAuthMiddlewareStack;
Django's views authenticate for themselves); a WebSocket's user is fixed at its
handshake, since a sign-in that ends between the handshake and the first
subscribe must close it with 4401 (notifications.access).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Initialise Django (apps, models) before importing consumers.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from booktime.health import health_routes  # noqa: E402
from booktime.logging import RequestIdMiddleware  # noqa: E402
from booktime.origin import OriginValidator  # noqa: E402
from notifications.auth import LazyAuthMiddlewareStack  # noqa: E402
from notifications.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": LazyAuthMiddlewareStack(URLRouter([*http_urlpatterns(django_asgi_app)])),
        "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
# Health, readiness and metrics answer ahead of everything (booktime/health.py);
# every request and connection gets its log id (booktime/logging.py).
application = RequestIdMiddleware(health_routes(application))
