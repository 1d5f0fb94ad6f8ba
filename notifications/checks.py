"""System checks that warn at start-up about settings that break real-time delivery."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings = []
    if settings.CHANNEL_LAYER == "memory" and not settings.DEBUG:
        warnings.append(
            Warning(
                "The channel layer is in-memory while DEBUG is off.",
                hint="Events reach only clients of the process that saved the order. "
                "Set CHANNEL_LAYER=redis and REDIS_URL in production.",
                id="notifications.W001",
            )
        )
    return warnings


@register(deploy=True)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Warning(
                "SECRET_KEY is the built-in development key.",
                hint="Set SECRET_KEY (or SECRET_KEY_FILE) in the environment; tracking "
                "links and sessions are signed with it.",
                id="booktime.W001",
            )
        ]
    return []
