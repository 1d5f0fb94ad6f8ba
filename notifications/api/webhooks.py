"""Webhook endpoints over REST, staff only: ``/api/webhooks/``.

Create, list, read, update (``enabled: false`` disables), delete; rotate the
secret; list an endpoint's deliveries, re-send one, replay from a cursor.
The secret is in the creation (and rotation) response only. Rules live in
``notifications.webhooks``; this module only maps HTTP to them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from notifications.webhooks import deliveries
from notifications.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from notifications.webhooks.safety import UnsafeURL, validate_url
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
from orders.models import EventType

MAX_ID = 10**18 - 1
ID_PATTERN = r"[0-9]{1,18}"
API_ERRORS = errors(*COMMON_ERRORS)
NOT_FOUND = errors(404)
BAD_INPUT = errors(400)


class IsStaffUser(IsStaff):
    """Webhooks send every order's data out: staff only, for reading too."""

    message = "Only staff may manage webhooks."


# --- serializers ------------------------------------------------------------------

# What the delivery worker keeps up to date: shown, never written by clients.
ENDPOINT_STATE_FIELDS = [
    "disabled_reason",
    "created_at",
    "updated_at",
    "last_success_at",
    "last_failure_at",
    "failing_since",
    "consecutive_failures",
    "retry_at",
    "disabled_at",
]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.CharField(max_length=2000, help_text="https:// URL that receives events.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        required=False,
        allow_empty=True,
        max_length=len(EventType.choices),
        help_text="Event types to send; empty (the default) means all.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "event_types", "enabled", *ENDPOINT_STATE_FIELDS]
        read_only_fields = ENDPOINT_STATE_FIELDS

    def validate_url(self, value: str) -> str:
        try:
            return validate_url(value)
        except UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_event_types(self, value: list[str]) -> list[str]:
        return sorted(set(value))


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="whsec_... signing secret; shown only in this response."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new whsec_... secret.")
    previous_secret_expires_at = serializers.DateTimeField(
        help_text="Until then the old secret signs too (a second v1 signature)."
    )


class AttemptSerializer(serializers.Serializer):
    at = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.IntegerField(read_only=True)
    history = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "state",
            "created_at",
            "attempts",
            "first_attempt_at",
            "last_attempt_at",
            "delivered_at",
            "next_attempt_at",
            "last_status_code",
            "last_latency_ms",
            "last_error",
            "last_response",
            "history",
        ]
        read_only_fields = fields


class DeliveryPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WebhookDeliverySerializer(many=True)


class DeliveryQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=DeliveryState.choices, required=False)


class ReplaySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, max_value=MAX_ID, help_text="Send again every event with a larger id."
    )


class ReplayResultSerializer(serializers.Serializer):
    after = serializers.IntegerField()
    requeued = serializers.IntegerField(help_text="Existing deliveries put back in the queue.")


class DeliveryPagination(StrictPagination):
    page_size = 50
    max_page_size = 500


# --- views ------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses={200: WebhookEndpointSerializer(many=True), **API_ERRORS}),
    retrieve=extend_schema(
        responses={
            200: WebhookEndpointSerializer,
            304: NOT_MODIFIED,
            **NOT_FOUND,
            **API_ERRORS,
        }
    ),
    create=extend_schema(
        responses={201: WebhookEndpointCreatedSerializer, **BAD_INPUT, **API_ERRORS}
    ),
    update=extend_schema(
        responses={200: WebhookEndpointSerializer, **BAD_INPUT, **NOT_FOUND, **API_ERRORS}
    ),
    partial_update=extend_schema(
        responses={200: WebhookEndpointSerializer, **BAD_INPUT, **NOT_FOUND, **API_ERRORS}
    ),
    destroy=extend_schema(responses={204: None, **NOT_FOUND, **API_ERRORS}),
)
@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(
    ApiMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Webhook endpoints (staff only). ``enabled: false`` disables one; ``true`` resumes it."""

    # Authentication, throttles (before permissions) and the error shape are
    # the API's (ApiMixin); only who may call differs.
    permission_classes = [IsStaffUser]
    serializer_class = WebhookEndpointSerializer
    lookup_value_regex = ID_PATTERN
    queryset = WebhookEndpoint.objects.order_by("id")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "create":
            return WebhookEndpointCreatedSerializer
        return WebhookEndpointSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One endpoint and its delivery state. Send If-None-Match to poll cheaply."""
        data = self.get_serializer(self.get_object()).data
        return conditional_response(request, data, weak_etag(data))

    def perform_create(self, serializer: Any) -> None:
        serializer.save(**deliveries.cursors_from_now())

    def perform_update(self, serializer: Any) -> None:
        endpoint = serializer.instance
        was_enabled = endpoint.enabled
        endpoint = serializer.save()
        if endpoint.enabled != was_enabled:
            deliveries.set_enabled(endpoint, endpoint.enabled)
            endpoint.save()

    @extend_schema(
        request=None,
        responses={200: SecretSerializer, **NOT_FOUND, **API_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        """New secret; the old one keeps signing for ``WEBHOOKS_ROTATION_GRACE_SECONDS``."""
        endpoint = self.get_object()
        secret = deliveries.rotate_secret(endpoint, settings.WEBHOOKS_ROTATION_GRACE_SECONDS)
        return Response(
            SecretSerializer(
                {
                    "secret": secret,
                    "previous_secret_expires_at": endpoint.previous_secret_expires_at,
                }
            ).data
        )

    @extend_schema(
        request=ReplaySerializer,
        responses={202: ReplayResultSerializer, **BAD_INPUT, **NOT_FOUND, **API_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        """Send every event after the ``after`` cursor again, in order."""
        endpoint = self.get_object()
        body = ReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        after = body.validated_data["after"]
        requeued = deliveries.replay(endpoint, after)
        return Response({"after": after, "requeued": requeued}, status=status.HTTP_202_ACCEPTED)

    def deliveries_of(self, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
        return WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-event_id")

    @extend_schema(
        parameters=[
            DeliveryQuerySerializer,
            OpenApiParameter("page", int, description="Page number, from 1."),
            OpenApiParameter("page_size", int, description="Deliveries per page (at most 500)."),
        ],
        responses={
            200: DeliveryPageSerializer,
            304: NOT_MODIFIED,
            **BAD_INPUT,
            **NOT_FOUND,
            **API_ERRORS,
        },
    )
    @action(detail=True, methods=["get"], pagination_class=DeliveryPagination)
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """The endpoint's delivery log, newest event first. If-None-Match polls cheaply."""
        endpoint = self.get_object()
        query = DeliveryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = self.deliveries_of(endpoint)
        if "state" in query.validated_data:
            qs = qs.filter(state=query.validated_data["state"])
        page = self.paginate_queryset(qs)
        data = self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data).data
        return conditional_response(request, data, weak_etag(data))

    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer, **NOT_FOUND, **API_ERRORS},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=rf"deliveries/(?P<delivery_id>{ID_PATTERN})/resend",
    )
    def resend(self, request: Request, pk: str | None = None, delivery_id: str = "") -> Response:
        """Send one delivery again, now."""
        endpoint = self.get_object()
        delivery = self.deliveries_of(endpoint).filter(id=int(delivery_id)).first()
        if delivery is None:
            raise NotFound()
        delivery = deliveries.resend(delivery)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
