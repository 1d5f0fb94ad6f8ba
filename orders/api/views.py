"""REST endpoints: products, orders (list, detail, create, transition), the event feed.

Writes go through ``orders.actions``; the feed defers every cursor and
ordering rule to ``notifications.log`` and every visibility rule to
``notifications.streams.authorize``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.log import parse_cursor, read_backlog
from notifications.streams import Subscription, authorize
from orders.actions import LineRequest, place_order, transition_order
from orders.api.permissions import DEFAULT_THROTTLES, IsStaff, TokenReadOnlyUnlessStaff
from orders.api.serializers import (
    ErrorSerializer,
    EventFeedQuerySerializer,
    EventFeedSerializer,
    OrderCreateSerializer,
    OrderDetailSerializer,
    OrderListQuerySerializer,
    OrderSerializer,
    ProductSerializer,
    TransitionSerializer,
)
from orders.models import Order, OrderEvent, Product
from orders.status import InvalidTransition

# Ids in URLs: digits only, at most 18 (see serializers.MAX_ID); anything else is a 404.
ID_PATTERN = r"[0-9]{1,18}"


def errors(*codes: int) -> dict[int, Any]:
    """Schema entries for error statuses, all in the one error shape."""
    return {code: ErrorSerializer for code in codes}


COMMON_ERRORS = (401, 403, 429, 503)


# --- ETag / 304 ---------------------------------------------------------------


def weak_etag(data: Any) -> str:
    digest = hashlib.sha256(
        json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder).encode()
    ).hexdigest()
    return f'W/"{digest[:32]}"'


def etag_matches(request: Request, etag: str) -> bool:
    """If-None-Match against ``etag`` with the weak comparison RFC 9110 asks for."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = parse_etags(header)
    if "*" in candidates:
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == bare for candidate in candidates)


def conditional_response(request: Request, data: Any, etag: str) -> Response:
    """200 with ``data`` and its ETag, or an empty 304 when the client has it already."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request, etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, headers=headers)


NOT_MODIFIED = OpenApiResponse(description="Not modified (If-None-Match matched the ETag).")


# --- shared base --------------------------------------------------------------


class ApiMixin:
    """Token or session authentication; the API's permissions and throttles.

    Token first: an anonymous caller then gets 401 with ``WWW-Authenticate:
    Token`` (DRF answers 403 when the first authenticator offers no challenge).
    Session authentication enforces CSRF for unsafe methods.
    """

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated, TokenReadOnlyUnlessStaff]
    throttle_classes = DEFAULT_THROTTLES


class OrderPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


# --- products -----------------------------------------------------------------


@extend_schema(
    tags=["catalogue"], responses={200: ProductSerializer(many=True), **errors(*COMMON_ERRORS)}
)
class ProductListView(ApiMixin, generics.ListAPIView):
    """Products that can be ordered (active ones), by name."""

    serializer_class = ProductSerializer
    pagination_class = None
    queryset = Product.objects.filter(active=True).order_by("name", "id")


# --- orders -------------------------------------------------------------------


class OrderViewSet(ApiMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Orders: customers see only their own (others' are 404); staff see all."""

    serializer_class = OrderSerializer
    pagination_class = OrderPagination
    lookup_value_regex = ID_PATTERN

    def get_queryset(self) -> QuerySet[Order]:
        qs = Order.objects.select_related("customer").order_by("-id")
        user = self.request.user
        if not user.is_staff:
            qs = qs.filter(customer_id=user.pk)
        if self.action != "list":
            qs = qs.prefetch_related("lines__product", "events")
        return qs

    @extend_schema(
        tags=["orders"],
        parameters=[OrderListQuerySerializer],
        responses={200: OrderSerializer(many=True), **errors(400, 404, *COMMON_ERRORS)},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Orders, newest first; filter by status and creation time; paginated."""
        query = OrderListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = self.get_queryset()
        if "status" in query.validated_data:
            qs = qs.filter(status=query.validated_data["status"])
        if "created_after" in query.validated_data:
            qs = qs.filter(created_at__gte=query.validated_data["created_after"])
        if "created_before" in query.validated_data:
            qs = qs.filter(created_at__lt=query.validated_data["created_before"])
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(OrderSerializer(page, many=True).data)

    @extend_schema(
        tags=["orders"],
        responses={200: OrderDetailSerializer, 304: NOT_MODIFIED, **errors(404, *COMMON_ERRORS)},
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One order with its lines and events. Send If-None-Match to poll cheaply."""
        data = OrderDetailSerializer(self.get_object()).data
        # The tracking token is re-signed on every call; leave it out of the
        # validator so the ETag changes only when the order does.
        etag = weak_etag({k: v for k, v in data.items() if k != "tracking_token"})
        return conditional_response(request, data, etag)

    @extend_schema(
        tags=["orders"],
        request=OrderCreateSerializer,
        responses={201: OrderDetailSerializer, **errors(400, *COMMON_ERRORS)},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Place an order as the signed-in user (products and quantities 1-99)."""
        payload = OrderCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        values = dict(payload.validated_data)
        lines = [LineRequest(line["product"], line["quantity"]) for line in values.pop("lines")]
        order = place_order(request.user, lines, shipping=values)
        order = self.get_queryset().get(pk=order.pk)
        return Response(
            OrderDetailSerializer(order).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"{request.path}{order.pk}/"},
        )

    @extend_schema(
        tags=["orders"],
        request=TransitionSerializer,
        responses={200: OrderDetailSerializer, **errors(400, 404, 409, *COMMON_ERRORS)},
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        """Staff: move the order to another status. 409 (with `allowed`) if not allowed."""
        order = self.get_object()  # 404 first: never reveal another customer's order
        if not IsStaff().has_permission(request, self):
            raise PermissionDenied(IsStaff.message)
        payload = TransitionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        requested = payload.validated_data["status"]
        if requested == order.status:
            # Not a change, so Order.save() would accept it silently; it is
            # still not a transition the table allows.
            raise InvalidTransition(order.status, requested)
        transition_order(
            order.pk, requested, actor=request.user, note=payload.validated_data["note"]
        )
        return Response(OrderDetailSerializer(self.get_queryset().get(pk=order.pk)).data)


# --- event feed ---------------------------------------------------------------


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
