"""E-mail: customer status e-mails and staff new-order e-mails from the order-event log.

- ``models``: preferences, the e-mail log (one row per recipient, event and
  audience), the channels' cursors;
- ``content``: which events make e-mails, their subjects and bodies (templates
  under ``notifications/templates/notifications/email/``), the links in them;
- ``unsubscribe``: signed one-click unsubscribe links (RFC 8058);
- ``deliveries``: creating rows, folding, claiming, recording outcomes;
- ``channel``: the ``deliver`` worker's e-mail channel.

See docs/notifications.md.
"""
