"""REST routes of the notifications app, mounted at ``api/`` by booktime/urls.py."""

from django.urls import path

from notifications.api.feed import EventFeedView

urlpatterns = [
    path("events/", EventFeedView.as_view(), name="api-events"),
]
