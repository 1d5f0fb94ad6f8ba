"""Signals the domain sends for other apps to act on (``orders`` imports no app).

``tracking_links_revoked(sender=Order, order_id=...)``: after commit, once
every tracking link of the order stopped working (its customer changed, or
it was revoked or rotated: ``orders.actions.revoke_tracking_links``).
Streams opened with such a link should end.
"""

from __future__ import annotations

from django.dispatch import Signal

tracking_links_revoked = Signal()
