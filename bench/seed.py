"""Bench setup process: migrate the private database and create the load's data.

``python -m bench.seed PLAN.json`` with ``{"phases": {"ws": N, ...}}``: for
each phase, N fresh orders in status ``placed``, each with its own customer
and a signed-in session for that customer; plus one staff user and session.
Run with the bench's ``DATABASE_URL`` and ``CHANNEL_LAYER=memory`` (the
``order.created`` events have no listener yet; publishing them to the
in-memory layer marks them published without touching Redis).

Prints one JSON line: ``{"staff_cookie": ..., "phases": {"ws": [[order_id,
customer_id, cookie], ...]}, "cursor": <latest event id>}``.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from typing import Any


def main(plan_path: str) -> None:
    with open(plan_path) as handle:
        plan = json.load(handle)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import transaction

    from orders.actions import LineRequest, place_order
    from orders.models import OrderEvent, Product
    from tests.support.asgi import session_cookie

    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    staff = user_model.objects.create_user("bench-staff", password=None, is_staff=True)
    product = Product.objects.create(sku="BENCH-1", name="Bench book", price=Decimal("19.95"))
    out: dict[str, Any] = {"staff_cookie": session_cookie(staff), "phases": {}}
    unusable = make_password(None)
    for phase, count in plan["phases"].items():
        with transaction.atomic():
            customers = user_model.objects.bulk_create(
                user_model(username=f"bench-{phase}-{i}", password=unusable) for i in range(count)
            )
            rows = []
            for customer in customers:
                order = place_order(
                    customer,
                    [LineRequest(product.pk, 3)],
                    shipping={"shipping_name": customer.username, "shipping_city": "Bench"},
                )
                rows.append([order.pk, customer.pk, session_cookie(customer)])
        out["phases"][phase] = rows
    latest = OrderEvent.objects.order_by("-id").values_list("id", flat=True).first()
    out["cursor"] = latest or 0
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
