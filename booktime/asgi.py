"""ASGI entry point: HTTP (Django + the SSE/long-poll consumers) and WebSocket.

The stream routes read a request's credentials the same way on every
transport: the session cookie, or a DRF ``Authorization: Token`` header
(notifications.auth, notifications.routing). The session's user is looked up
by the stream consumer's first authorization, in the same database hop as
the first backlog page (notifications.auth.StreamAuthMiddlewareStack): a
handshake costs no database hop. A session cookie that signs nobody in by
then reads as a sign-in that ended (WebSocket close 4401 where anonymous is
refused; notifications.access.Principal). Django's views authenticate for
themselves. WebSocket handshakes must also come from an allowed origin:
scheme, host and port (booktime.origin).
"""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Initialise Django (apps, models) before importing consumers.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from booktime.health import health_routes  # noqa: E402
from booktime.logging import RequestIdMiddleware  # noqa: E402
from booktime.origin import OriginValidator  # noqa: E402
from booktime.server_fixes import defer_handshake_config_dump  # noqa: E402
from notifications.auth import StreamAuthMiddlewareStack  # noqa: E402
from notifications.metrics import watch_collections  # noqa: E402
from notifications.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": StreamAuthMiddlewareStack(URLRouter([*http_urlpatterns(django_asgi_app)])),
        "websocket": OriginValidator(StreamAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
# Health, readiness and metrics answer ahead of everything (booktime/health.py);
# every request and connection gets its log id (booktime/logging.py).
application = RequestIdMiddleware(health_routes(application))
# autobahn's per-connection debug dump, made whether logged or not (booktime/server_fixes.py).
defer_handshake_config_dump()

# What startup made (Django, the apps, the URL conf, the imported libraries:
# about 100,000 objects that live as long as the process) leaves the cyclic
# collector's view, which traversed all of it on every full collection: a
# sixth of a WebSocket connect's CPU under churn was the collector
# (docs/performance.md, round 7). Nothing frozen is ever freed, so this runs
# once, after the imports and before the first connection. Every collection's
# pause is on /metrics (booktime_gc_pause_seconds).
gc.freeze()
# Young-generation passes every GC_YOUNG_THRESHOLD allocations rather than 700
# (booktime/settings.py; round 12). The older generations' ratios stay Python's.
if settings.GC_YOUNG_THRESHOLD:
    gc.set_threshold(settings.GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
watch_collections()
