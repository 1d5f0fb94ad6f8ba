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
    if settings.CHANNEL_LAYER == "redis":
        warnings += check_redis_layer_timeout(settings.CHANNEL_LAYERS["default"])
    return warnings


def check_redis_layer_timeout(layer: dict[str, Any]) -> list[Warning]:
    """RedisChannelLayer's blocking receive must not time out on the client side.

    Its BZPOPMIN waits up to ``brpop_timeout`` (5 s); a redis-py
    ``socket_timeout`` at or below that (redis-py's default is 5 s) fails every
    idle receive, which consumers take for an outage (notifications.recovery).
    """
    from channels_redis.core import RedisChannelLayer

    blocking = RedisChannelLayer.brpop_timeout
    warnings = []
    for host in layer.get("CONFIG", {}).get("hosts", []):
        timeout = host.get("socket_timeout", 5) if isinstance(host, dict) else 5
        if timeout is not None and timeout <= blocking:
            warnings.append(
                Warning(
                    f"The redis channel layer's socket_timeout ({timeout} s) does not exceed "
                    f"its blocking receive ({blocking} s).",
                    hint="Every idle receive then times out and is handled as an outage. "
                    "Give each host a socket_timeout above it (CHANNEL_LAYER_SOCKET_TIMEOUT).",
                    id="notifications.W002",
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
