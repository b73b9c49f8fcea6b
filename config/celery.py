"""The Celery app. The request id of the web request that enqueued a task follows it into the worker."""

import contextlib
import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_TOKENS: dict[str, object] = {}


@before_task_publish.connect
def _attach_request_id(headers=None, **_kwargs):
    from config.middleware import current_request_id

    if headers is not None and "request_id" not in headers:
        headers["request_id"] = current_request_id()


@task_prerun.connect
def _enter_request_id(task_id=None, task=None, **_kwargs):
    from config.middleware import new_request_id, set_request_id

    rid = getattr(task.request, "request_id", None) or f"task-{new_request_id()}"
    _TOKENS[task_id] = set_request_id(rid)


@task_postrun.connect
def _leave_request_id(task_id=None, **_kwargs):
    from config.middleware import reset_request_id

    token = _TOKENS.pop(task_id, None)
    if token is not None:
        # A token is bound to the context that made it; a pool that switched contexts
        # simply has the value replaced on the next prerun.
        with contextlib.suppress(ValueError):
            reset_request_id(token)


@worker_init.connect
def _poll_the_database_broker_briskly(sender=None, **_kwargs):
    """The embedded default's broker is a database table: kombu polls it, once a second by default, and
    with prefetch 1 that caps a worker near two tasks a second. Poll every 100 ms instead. (Redis is not
    polled; this only touches the SQLAlchemy transport, whose options cannot carry it: they go to
    create_engine.)"""
    url = str(getattr(sender, "app", app).conf.broker_url or "")
    if url.startswith("sqla+"):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = 0.1
