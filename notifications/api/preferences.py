"""``/api/notification-preferences/``: the signed-in user's own e-mail choices.

There is no id in the URL: a user can only ever read or change their own
preferences. The rule (which kinds exist for whom) is
``notifications.email.preferences``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from booktime.errors import ClientError
from notifications.email import preferences
from orders.api.common import COMMON_ERRORS, ApiMixin, errors

PREFERENCES = inline_serializer(
    "NotificationPreferences",
    {
        "email": serializers.DictField(
            child=serializers.BooleanField(),
            help_text='E-mail kind -> on/off, e.g. {"shipped": true, "staff_new_orders": false}.',
        )
    },
)


def parse_choices(user: Any, data: Any) -> dict[str, bool]:
    if not isinstance(data, dict) or not isinstance(data.get("email"), dict):
        raise ClientError("invalid", 'expected {"email": {"<kind>": true|false}}', field="email")
    allowed = preferences.kinds_for(user)
    choices = {}
    for kind, on in data["email"].items():
        if kind not in allowed:
            raise ClientError(
                "invalid",
                f"unknown e-mail kind (one of {', '.join(allowed)})",
                field=f"email.{kind}",
            )
        if not isinstance(on, bool):
            raise ClientError("invalid", "must be true or false", field=f"email.{kind}")
        choices[kind] = on
    return choices


class NotificationPreferencesView(ApiMixin, APIView):
    @extend_schema(tags=["notifications"], responses={200: PREFERENCES, **errors(*COMMON_ERRORS)})
    def get(self, request: Request) -> Response:
        """Which e-mails you get."""
        return Response({"email": preferences.as_dict(request.user)})

    @extend_schema(
        tags=["notifications"],
        request=PREFERENCES,
        responses={200: PREFERENCES, **errors(400, *COMMON_ERRORS)},
    )
    def patch(self, request: Request) -> Response:
        """Switch e-mail kinds on or off (kinds not named stay as they are)."""
        choices = parse_choices(request.user, request.data)
        return Response({"email": preferences.update(request.user, choices)})

    put = patch
