from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LogisticsConfig(AppConfig):
    name = "logistics"
    verbose_name = _("Logistics")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Subscribe to the after-sales core's after-commit events (the dependency runs logistics →
        # aftersales, so the core publishes and logistics listens). Both handlers only enqueue tasks.
        from logistics import label_hooks, tracking_hooks

        tracking_hooks.connect()
        label_hooks.connect()
