"""REST routes of the notifications app, mounted at ``api/`` by booktime/urls.py."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from notifications.api.feed import EventFeedView
from notifications.api.preferences import NotificationPreferencesView
from notifications.api.push import PushKeyView, PushSubscriptionsView
from notifications.api.webhooks import WebhookEndpointViewSet

router = SimpleRouter()
router.register("webhooks", WebhookEndpointViewSet, basename="api-webhook")

urlpatterns = [
    path("events/", EventFeedView.as_view(), name="api-events"),
    path(
        "notification-preferences/",
        NotificationPreferencesView.as_view(),
        name="api-notification-preferences",
    ),
    path("push/key/", PushKeyView.as_view(), name="api-push-key"),
    path("push/subscriptions/", PushSubscriptionsView.as_view(), name="api-push-subscriptions"),
    *router.urls,
]
