"""Webhooks: signed, ordered, retried HTTP deliveries of the order-event log to third parties.

- ``models``: endpoints and the delivery log (one row per endpoint and event);
- ``signing``: secrets and Standard Webhooks signatures (``standardwebhooks``);
- ``safety``: which URLs and addresses may be called (SSRF rules);
- ``schedule``: the retry back-off;
- ``deliveries``: creating, claiming, recording, re-sending and replaying deliveries;
- ``sender``: the HTTP call (resolve, check, connect to the checked address);
- ``channel``: the ``deliver`` worker's webhook channel.

See docs/webhooks.md.
"""
