"""Admin: the e-mail log (read-only, with "unknown" rows to check by hand), preferences,
push subscriptions and the push log. Registered from ``notifications/admin.py``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from notifications.email.models import EmailMessage, EmailPreferences
from notifications.push.models import PushMessage, PushSubscription


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EmailMessage)
class EmailMessageAdmin(ReadOnly):
    list_display = ["id", "recipient", "audience", "kind", "event", "state", "attempts", "sent_at"]
    list_filter = ["state", "audience", "kind"]
    search_fields = ["recipient", "subject", "message_id"]
    ordering = ["-id"]


@admin.register(EmailPreferences)
class EmailPreferencesAdmin(admin.ModelAdmin):
    list_display = ["user", "muted", "unsubscribed_at", "updated_at"]
    search_fields = ["user__username", "user__email"]


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["id", "target", "scope", "user", "order", "created_at", "last_success_at"]
    list_filter = ["scope"]
    readonly_fields = ["endpoint", "p256dh", "auth"]


@admin.register(PushMessage)
class PushMessageAdmin(ReadOnly):
    list_display = ["id", "subscription", "event", "state", "attempts", "last_status_code"]
    list_filter = ["state"]
    ordering = ["-id"]
