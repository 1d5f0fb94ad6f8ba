"""Create (or show, or rotate) the REST API token of a user.

    manage.py create_api_token alice
    manage.py create_api_token alice --rotate

A token of a staff user may write (place orders, change statuses); any other
user's token is read-only. Staff can also manage tokens in the admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print the API token of a user, creating it if needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="Replace an existing token with a new one."
        )

    def handle(self, *args: Any, username: str, rotate: bool, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        if rotate:
            Token.objects.filter(user=user).delete()
        token, created = Token.objects.get_or_create(user=user)
        access = "read-write (staff)" if user.is_staff else "read-only"
        verb = "Created" if created else "Existing"
        self.stderr.write(f"{verb} {access} token for {username}:")
        self.stdout.write(token.key)
