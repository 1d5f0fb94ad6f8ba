"""REST endpoints for products and orders (list, detail, create, transition).

Writes go through ``orders.actions``. The event feed, ``api/events/``, is a
notifications transport: ``notifications.api``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from orders.actions import LineRequest, place_order, transition_order
from orders.api.common import (
    COMMON_ERRORS,
    NOT_MODIFIED,
    ApiMixin,
    conditional_response,
    errors,
    weak_etag,
)
from orders.api.permissions import IsStaff
from orders.api.serializers import (
    OrderCreateSerializer,
    OrderDetailSerializer,
    OrderListQuerySerializer,
    OrderSerializer,
    ProductSerializer,
    TransitionSerializer,
)
from orders.models import Order, Product
from orders.status import InvalidTransition

# Ids in URLs: digits only, at most 18 (see serializers.MAX_ID); anything else is a 404.
ID_PATTERN = r"[0-9]{1,18}"


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
