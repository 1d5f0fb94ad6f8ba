"""notifications' REST routes, mounted at ``api/`` by booktime/urls.py."""

from rest_framework.routers import SimpleRouter

from notifications.api.webhooks import WebhookEndpointViewSet

router = SimpleRouter()
router.register("webhooks", WebhookEndpointViewSet, basename="api-webhook")

urlpatterns = [*router.urls]
