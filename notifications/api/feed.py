"""``GET api/events/``: order events after a cursor, in id order, for third parties.

A REST transport of the event log: every cursor and ordering rule is
``notifications.log``'s, every visibility rule ``notifications.streams.authorize``;
authentication, throttles, error shape and ETag/304 are the REST API's
(``orders.api.common``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.log import parse_cursor, read_backlog
from notifications.streams import Subscription, authorize
from orders.api.common import (
    COMMON_ERRORS,
    NOT_MODIFIED,
    ApiMixin,
    conditional_response,
    errors,
    weak_etag,
)
from orders.api.serializers import MAX_ID, EventSerializer
from orders.models import EventType, OrderEvent

FEED_MAX_LIMIT = 500
FEED_DEFAULT_LIMIT = 100


class EventFeedSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next = serializers.IntegerField(help_text="Pass as `after` to read on.")
    reset = serializers.BooleanField(
        help_text="The cursor could not be served (pruned or from the future): reload the "
        "orders' current state, then follow on from `next`."
    )
    more = serializers.BooleanField(help_text="Another page is waiting: call again at once.")


class EventFeedQuerySerializer(serializers.Serializer):
    """Query parameters of ``api/events/`` besides ``after`` (parsed by notifications.log)."""

    order = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this order's events."
    )
    type = serializers.ChoiceField(
        choices=EventType.choices, required=False, help_text="Only events of this type."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=FEED_MAX_LIMIT,
        default=FEED_DEFAULT_LIMIT,
        help_text=f"Events per page, 1-{FEED_MAX_LIMIT}.",
    )


@extend_schema(
    tags=["events"],
    parameters=[
        OpenApiParameter(
            "after",
            {"type": "integer", "minimum": 0},
            description="Id of the last event seen (`next` of the previous page). "
            "Omit to start from now; 0 reads the whole log.",
        ),
        EventFeedQuerySerializer,
    ],
    responses={200: EventFeedSerializer, 304: NOT_MODIFIED, **errors(400, *COMMON_ERRORS)},
)
class EventFeedView(ApiMixin, APIView):
    """Order events after a cursor, in id order: follow `next`; reload state on `reset`."""

    def get(self, request: Request) -> Response:
        query = EventFeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = parse_cursor(request.query_params.get("after"), "after")
        options = query.validated_data
        queryset = OrderEvent.objects.all()
        if "type" in options:
            queryset = queryset.filter(type=options["type"])
        subscription = self.subscription(request, options.get("order"))
        backlog = read_backlog(subscription, after, options["limit"], queryset=queryset)
        data = {
            "events": backlog.events,
            "next": backlog.cursor,
            "reset": backlog.reset,
            "more": backlog.more,
        }
        return conditional_response(request, data, weak_etag(data))

    def subscription(self, request: Request, order_id: int | None) -> Subscription | None:
        """What the caller may read, decided by the streams' own rule."""
        if order_id is not None:
            return authorize(request.user, f"order:{order_id}")
        if request.user.is_staff:
            return None  # everything
        return authorize(request.user, "mine")
