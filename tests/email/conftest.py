"""The shared e-mail and push fixtures (``tests.support.outbound``)."""

from tests.support.outbound import (  # noqa: F401 - fixtures
    outbound_env,
    outbound_settings,
    push_service,
    smtp_server,
    start_deliver_worker,
    vapid_keys,
)
