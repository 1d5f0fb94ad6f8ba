"""REST routes of the notifications app, mounted at ``api/`` by booktime/urls.py."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from notifications.api.feed import EventFeedView
from notifications.api.webhooks import WebhookEndpointViewSet

router = SimpleRouter()
router.register("webhooks", WebhookEndpointViewSet, basename="api-webhook")

urlpatterns = [
    path("events/", EventFeedView.as_view(), name="api-events"),
    *router.urls,
]
