"""``{% push_button %}``: the "notify me even when this tab is closed" button and its script."""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

from notifications.push.sender import vapid_configured

register = template.Library()


@register.simple_tag
def push_button() -> str:
    """Hidden until push.js finds a browser that supports Web Push; nothing without VAPID keys."""
    from django.conf import settings

    if not vapid_configured():
        return ""
    return format_html(
        '<button type="button" id="push-toggle" class="small" data-vapid-key="{}" hidden>'
        "Notify me even when this tab is closed</button>"
        '<script src="{}" defer></script>',
        settings.VAPID_PUBLIC_KEY,
        static("frontend/push.js"),
    )
