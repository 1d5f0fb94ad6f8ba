"""Set-up shared by the one-process timers (``bench.hop``, ``bench.publish``):
this process's Django on a fresh, migrated SQLite database, and placed orders
on it, each with its own customer."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any


def migrated_database(path: str, **environ: str) -> None:
    """Point this process at a new SQLite database at ``path`` (and ``environ``'s
    other settings), set Django up and migrate the database."""
    os.environ.update(DATABASE_URL=f"sqlite:///{path}", **environ)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def placed_orders(usernames: list[str]) -> list[Any]:
    """One placed order of one book per username, each by a new customer of that name."""
    from django.contrib.auth import get_user_model

    from orders.actions import LineRequest, place_order
    from orders.models import Product

    product = Product.objects.create(sku="BENCH-ONE", name="Bench book", price=Decimal("9.95"))
    users = get_user_model().objects
    return [
        place_order(
            users.create_user(name, password=None),
            [LineRequest(product.pk, 1)],
            shipping={"shipping_name": "Bench", "shipping_city": "X"},
        )
        for name in usernames
    ]
