"""Web Push over REST: the VAPID public key, and subscribing a browser to a stream.

``POST /api/push/subscriptions/`` with ``{"stream": "mine" | "staff" |
"order:<id>", "token": <tracking token, for anonymous viewers>,
"subscription": <PushSubscription.toJSON()>}``. Who may subscribe to what is
``notifications.push.subscriptions`` (the live streams' rule).
``DELETE`` with ``{"endpoint": ...}`` forgets a browser.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from booktime.errors import ClientError
from notifications.push import subscriptions
from notifications.push.sender import vapid_configured
from orders.api.common import COMMON_ERRORS, ApiMixin, errors
from orders.api.permissions import TokenReadOnlyUnlessStaff

KEY = inline_serializer(
    "PushKey", {"enabled": serializers.BooleanField(), "public_key": serializers.CharField()}
)
SUBSCRIBE = inline_serializer(
    "PushSubscribe",
    {
        "stream": serializers.CharField(help_text="mine, staff or order:<id>"),
        "token": serializers.CharField(required=False, help_text="tracking token (anonymous)"),
        "subscription": serializers.DictField(help_text="PushSubscription.toJSON()"),
    },
)
SUBSCRIBED = inline_serializer(
    "PushSubscribed", {"id": serializers.IntegerField(), "scope": serializers.CharField()}
)
UNSUBSCRIBE = inline_serializer("PushUnsubscribe", {"endpoint": serializers.CharField()})


class PushKeyView(ApiMixin, APIView):
    permission_classes = [AllowAny]

    @extend_schema(tags=["notifications"], responses={200: KEY})
    def get(self, request: Request) -> Response:
        """The application server key browsers subscribe with (push is off without one)."""
        return Response({"enabled": vapid_configured(), "public_key": settings.VAPID_PUBLIC_KEY})


class PushSubscriptionsView(ApiMixin, APIView):
    # Anonymous viewers subscribe with a tracking token; ``authorize`` decides.
    permission_classes = [AllowAny, TokenReadOnlyUnlessStaff]

    @extend_schema(
        tags=["notifications"],
        request=SUBSCRIBE,
        # 404: Web Push is not configured (no VAPID keys).
        responses={201: SUBSCRIBED, **errors(400, 404, *COMMON_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        """Send this browser a notification for each change of the stream."""
        if not vapid_configured():
            raise ClientError("not_found", "Web Push is not configured on this server")
        data = request.data if isinstance(request.data, dict) else {}
        stream, token = data.get("stream"), data.get("token")
        if not isinstance(stream, str):
            raise ClientError("invalid", "stream must be mine, staff or order:<id>", field="stream")
        if token is not None and not isinstance(token, str):
            raise ClientError("invalid", "token must be a string", field="token")
        sub = data.get("subscription")
        if not isinstance(sub, dict):
            raise ClientError("invalid", "subscription must be an object", field="subscription")
        subscription = subscriptions.subscribe(
            request.user, stream, token or None, sub.get("endpoint"), sub.get("keys")
        )
        return Response(
            {"id": subscription.pk, "scope": subscription.scope}, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        tags=["notifications"],
        request=UNSUBSCRIBE,
        responses={204: None, **errors(400, *COMMON_ERRORS)},
    )
    def delete(self, request: Request) -> Response:
        """Stop notifications to this browser."""
        data = request.data if isinstance(request.data, dict) else {}
        subscriptions.unsubscribe(data.get("endpoint"))
        return Response(status=status.HTTP_204_NO_CONTENT)
