"""REST endpoints of the notifications app: the event feed (``feed``) and webhooks (``webhooks``)."""
