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
from rest_framework.request import Request
from rest_framework.response import Response

from orders.access import make_tracking_token, tracking_path
from orders.actions import LineRequest, place_order, revoke_tracking_links, transition_order
from orders.api.common import (
    COMMON_ERRORS,
    NOT_MODIFIED,
    ApiMixin,
    StrictPagination,
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
    TrackingLinkSerializer,
    TransitionSerializer,
)
from orders.models import Order, Product
from orders.status import InvalidTransition

# Ids in URLs: digits only, at most 18 (see serializers.MAX_ID); anything else is a 404.
ID_PATTERN = r"[0-9]{1,18}"


class OrderPagination(StrictPagination):
    page_size = 50
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
        # The tracking token is re-signed on every call: the validator covers
        # the version it is bound to instead, so the ETag changes when the
        # order does or its links are revoked.
        order = self.get_object()
        data = OrderDetailSerializer(order).data
        etag = weak_etag(
            {
                **{k: v for k, v in data.items() if k != "tracking_token"},
                "tracking_version": order.tracking_version,
            }
        )
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

    @extend_schema(
        tags=["orders"],
        methods=["POST"],
        request=None,
        responses={200: TrackingLinkSerializer, **errors(404, *COMMON_ERRORS)},
        summary="Rotate the order's tracking link",
    )
    @extend_schema(
        tags=["orders"],
        methods=["DELETE"],
        request=None,
        responses={204: None, **errors(404, *COMMON_ERRORS)},
        summary="Revoke the order's tracking links",
    )
    @action(detail=True, methods=["post", "delete"], url_path="tracking-link")
    def tracking_link(self, request: Request, pk: str | None = None) -> Response:
        """The order's customer or staff: end every tracking link of the order.

        POST (rotate) answers with a new link; DELETE (revoke) shows none.
        Others' orders are 404; a customer's read-only API token gets 403.
        """
        order = revoke_tracking_links(self.get_object())  # 404 first, as elsewhere
        if request.method == "DELETE":
            return Response(status=status.HTTP_204_NO_CONTENT)
        token = make_tracking_token(order)
        return Response(
            TrackingLinkSerializer(
                {"token": token, "url": request.build_absolute_uri(tracking_path(token))}
            ).data
        )
