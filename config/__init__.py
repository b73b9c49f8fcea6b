"""Project configuration: settings, urls, Celery app, API conventions, middleware."""

# Imported here so ``shared_task`` binds to this app in every process (web, worker, beat).
from config.celery import app as celery_app

__all__ = ["celery_app"]
