"""Web Push: browser notifications "even when this tab is closed", from the order-event log.

- ``models``: subscriptions (per user, per staff member, or per tracking
  link for anonymous viewers) and the push log (one row per subscription
  and event);
- ``subscriptions``: who may subscribe to what (the authorization rule);
- ``deliveries``: creating rows, claiming, recording outcomes;
- ``sender``: VAPID-signed, RFC 8291-encrypted requests through ``pywebpush``;
- ``channel``: the ``deliver`` worker's push channel.

See docs/notifications.md.
"""
