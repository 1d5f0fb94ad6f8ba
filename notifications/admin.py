"""Admin: webhook endpoints (with their health) and the delivery log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.webhooks import deliveries
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint
from notifications.webhooks.safety import UnsafeURL, validate_url

# A delivery's outcome, as both delivery lists show it.
DELIVERY_OUTCOME = [
    "event_type",
    "state",
    "attempts",
    "last_attempt_at",
    "last_status_code",
    "last_latency_ms",
    "next_attempt_at",
]


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["event", *DELIVERY_OUTCOME, "last_error"]
    readonly_fields = fields
    ordering = ["-event_id"]
    max_num = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).order_by("-event_id")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = [
        "url",
        "enabled",
        "last_success_at",
        "failing_since",
        "consecutive_failures",
        "retry_at",
        "description",
    ]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    # The delivery state the worker keeps: shown, never edited.
    readonly_fields = [
        "disabled_reason",
        "last_success_at",
        "last_failure_at",
        "failing_since",
        "consecutive_failures",
        "retry_at",
        "start_after",
        "rows_through",
    ]
    fields = ["url", "description", "event_types", "enabled", *readonly_fields]
    inlines = [WebhookDeliveryInline]
    actions = ["enable", "disable", "rotate_secret"]

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        if not change:
            for name, cursor in deliveries.cursors_from_now().items():
                setattr(obj, name, cursor)
        elif "enabled" in form.changed_data:
            deliveries.set_enabled(obj, obj.enabled)
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                f"Signing secret for {obj.url} (shown once, copy it now): {obj.secret}",
            )

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        original = form.clean_url if hasattr(form, "clean_url") else None

        def clean_url(self: Any) -> str:
            url = original(self) if original else self.cleaned_data["url"]
            try:
                return validate_url(url)
            except UnsafeURL as exc:
                raise ValidationError(str(exc)) from None

        form.clean_url = clean_url
        return form

    @admin.action(description="Enable (resume delivery where it stopped)")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            deliveries.set_enabled(endpoint, True)
            endpoint.save()

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            deliveries.set_enabled(endpoint, False)
            endpoint.save()

    @admin.action(description="Rotate the signing secret")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            secret = deliveries.rotate_secret(endpoint, settings.WEBHOOKS_ROTATION_GRACE_SECONDS)
            messages.warning(request, f"New secret for {endpoint.url} (shown once): {secret}")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, plus re-send."""

    list_display = ["id", "endpoint", "event_id", *DELIVERY_OUTCOME]
    list_filter = ["state", "endpoint"]
    list_select_related = ["endpoint"]
    actions = ["resend"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Re-send now")
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            deliveries.resend(delivery)
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.")


# E-mail and Web Push (their own module, docs/notifications.md).
from notifications.email import admin as email_admin  # noqa: E402, F401
