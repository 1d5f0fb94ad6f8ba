"""Request and response shapes of the REST API.

Event envelopes are built by ``OrderEvent.envelope()`` (the one shape every
transport sends); ``EventSerializer`` only documents that shape in the schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.access import make_tracking_token
from orders.actions import MAX_LINES, MAX_QUANTITY, MIN_QUANTITY
from orders.models import EventType, Order, OrderLine, Product
from orders.status import OrderStatus, allowed_next

# Largest id accepted as input: stream names (``order:<id>``) allow 18 digits,
# and no shop reaches 10**18 rows. Bigger values are refused up front.
MAX_ID = 10**18 - 1


# --- errors (schema only) -----------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField())
    # Only on 409 invalid_transition:
    current = serializers.CharField(required=False, allow_null=True)
    requested = serializers.CharField(required=False)
    allowed = serializers.ListField(child=serializers.CharField(), required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- catalogue ----------------------------------------------------------------


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "sku", "name", "price", "active"]


# --- events -------------------------------------------------------------------


class EventOrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    previous_status = serializers.ChoiceField(choices=OrderStatus.choices, allow_null=True)
    total = serializers.CharField()
    items = serializers.IntegerField()
    updated_at = serializers.CharField()


class EventSerializer(serializers.Serializer):
    """The event envelope, the one shape every transport sends (see docs/architecture.md)."""

    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=EventType.choices)
    at = serializers.CharField(help_text="ISO 8601, UTC, milliseconds: 2026-11-24T21:00:00.123Z")
    order = EventOrderSerializer()


# --- orders -------------------------------------------------------------------


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku", read_only=True)
    name = serializers.CharField(source="product.name", read_only=True)
    line_total = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)

    class Meta:
        model = OrderLine
        fields = ["id", "product", "sku", "name", "quantity", "unit_price", "line_total"]


class OrderSerializer(serializers.ModelSerializer):
    """An order as it appears in lists."""

    customer = serializers.IntegerField(source="customer_id", read_only=True)
    customer_username = serializers.CharField(source="customer.username", read_only=True)
    items = serializers.IntegerField(source="item_count", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "reference",
            "customer",
            "customer_username",
            "status",
            "created_at",
            "updated_at",
            "total",
            "items",
        ]
        read_only_fields = fields


class OrderDetailSerializer(OrderSerializer):
    """One order with its lines, its events, what may come next and a tracking link token."""

    lines = OrderLineSerializer(many=True, read_only=True)
    events = serializers.SerializerMethodField()
    allowed_next = serializers.SerializerMethodField()
    tracking_token = serializers.SerializerMethodField()

    class Meta(OrderSerializer.Meta):
        fields = [
            *OrderSerializer.Meta.fields,
            "shipping_name",
            "shipping_address",
            "shipping_city",
            "shipping_postcode",
            "shipping_country",
            "lines",
            "events",
            "allowed_next",
            "tracking_token",
        ]
        read_only_fields = fields

    @extend_schema_field(EventSerializer(many=True))
    def get_events(self, order: Order) -> list[dict[str, Any]]:
        return [event.envelope() for event in order.events.all()]

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(OrderStatus.choices)))
    def get_allowed_next(self, order: Order) -> list[str]:
        return allowed_next(order.status)

    @extend_schema_field(serializers.CharField())
    def get_tracking_token(self, order: Order) -> str:
        return make_tracking_token(order)


class TrackingLinkSerializer(serializers.Serializer):
    """A new tracking link: every earlier one has stopped working."""

    token = serializers.CharField(help_text="Send as the X-Tracking-Token header.")
    url = serializers.CharField(
        help_text="The page to share: /track/#<token> (the token is in the fragment, "
        "which browsers never send to a server)."
    )


class OrderLineRequestSerializer(serializers.Serializer):
    product = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    quantity = serializers.IntegerField(min_value=MIN_QUANTITY, max_value=MAX_QUANTITY)


class OrderCreateSerializer(serializers.Serializer):
    lines = OrderLineRequestSerializer(many=True, min_length=1, max_length=MAX_LINES)
    shipping_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    shipping_address = serializers.CharField(max_length=300, required=False, allow_blank=True)
    shipping_city = serializers.CharField(max_length=100, required=False, allow_blank=True)
    shipping_postcode = serializers.CharField(max_length=20, required=False, allow_blank=True)
    shipping_country = serializers.RegexField(
        r"^[A-Z]{2}$", required=False, help_text="ISO 3166-1 alpha-2, e.g. GB"
    )

    def validate_lines(self, lines: list[dict[str, int]]) -> list[dict[str, int]]:
        ids = {line["product"] for line in lines}
        active = set(Product.objects.filter(pk__in=ids, active=True).values_list("pk", flat=True))
        errors: list[dict[str, Any]] = [
            {} if line["product"] in active else {"product": ["Unknown or inactive product."]}
            for line in lines
        ]
        if any(errors):
            raise serializers.ValidationError(errors)
        return lines


class TransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class OrderListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
    created_after = serializers.DateTimeField(
        required=False, help_text="Orders created at or after this time (ISO 8601)."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Orders created before this time (ISO 8601)."
    )
