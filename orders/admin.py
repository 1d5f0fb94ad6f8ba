"""Admin: the catalogue, orders with their lines and their (read-only) event log.

A status change made in the admin goes through ``Order.save(actor=...)``, so
it is validated against the transition table (a form error, not a 500) and
logged as one event with the admin user as actor. API tokens are managed in
the admin by ``rest_framework.authtoken``'s own ``TokenAdmin``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from orders.models import Order, OrderEvent, OrderLine, Product
from orders.status import InvalidTransition, OrderStatus, check_transition


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "active"]
    list_filter = ["active"]
    list_editable = ["active"]
    search_fields = ["sku", "name"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    autocomplete_fields = ["product"]
    fields = ["product", "quantity", "unit_price"]


class OrderEventInline(admin.TabularInline):
    """The order's event log: history, never edited by hand."""

    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ["id", "type", "status_change", "actor", "note", "created_at", "published_at"]
    readonly_fields = fields
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def status_change(self, event: OrderEvent) -> str:
        previous = event.data.get("previous_status")
        current = event.data.get("status", "")
        return f"{previous} → {current}" if previous else current


class OrderAdminForm(forms.ModelForm):
    """Refuses a status change the transition table does not allow."""

    class Meta:
        model = Order
        fields = [
            "customer",
            "status",
            "shipping_name",
            "shipping_address",
            "shipping_city",
            "shipping_postcode",
            "shipping_country",
            "total",
            "item_count",
        ]

    def clean_status(self) -> str:
        requested = self.cleaned_data["status"]
        if self.instance.pk is None:
            if requested != OrderStatus.PLACED:
                self._refuse(None, requested)
            return requested
        current = Order.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
        if current is not None and current != requested:
            self._refuse(current, requested)
        return requested

    @staticmethod
    def _refuse(current: str | None, requested: str) -> None:
        try:
            check_transition(current, requested)
        except InvalidTransition as exc:
            raise forms.ValidationError(str(exc), code="invalid_transition") from None


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    form = OrderAdminForm
    list_display = ["reference", "customer", "status", "total", "item_count", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["reference", "customer__username", "customer__email", "shipping_name"]
    date_hierarchy = "created_at"
    # Changing the customer bumps tracking_version: their tracking links end.
    readonly_fields = ["reference", "created_at", "updated_at", "tracking_version"]
    raw_id_fields = ["customer"]
    inlines = [OrderLineInline, OrderEventInline]
    # No bulk actions: QuerySet.update() would bypass the event log.
    actions = None

    def save_model(self, request: HttpRequest, obj: Order, form: Any, change: bool) -> None:
        # The form refused illegal transitions; Order.save() re-checks under a
        # row lock and records the admin user on the event.
        obj.save(actor=request.user, note="changed in the admin")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting an order would delete its events too: the log is history.
        return False
