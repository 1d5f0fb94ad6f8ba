"""Outbound delivery: one worker (``manage.py deliver``) for every channel that
sends to the outside world. Webhooks are the first channel; e-mail and push
become one more ``OutboundChannel`` subclass each (see ``base``)."""
