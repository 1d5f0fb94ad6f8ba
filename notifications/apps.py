from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifications import access, checks, receivers  # noqa: F401  (connect signals, register checks)
        from notifications.email import receivers as email_push_receivers  # noqa: F401
        from notifications.webhooks import receivers as webhook_receivers  # noqa: F401

        access.connect_signals()
