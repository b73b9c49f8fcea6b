"""A real worker on the real broker (Redis in CI, the Postgres transport on the embedded default)."""

import time

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import app
from stores.models import Heartbeat
from stores.tasks import heartbeat


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_task_round_trip_through_broker_and_worker():
    # Fail fast (instead of waiting forever for a worker that cannot start) when the broker is down.
    with app.connection() as connection:
        connection.ensure_connection(max_retries=3)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        heartbeat.delay("test-worker")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not Heartbeat.objects.filter(name="test-worker").exists():
            time.sleep(0.2)
    beat = Heartbeat.objects.get(name="test-worker")
    assert beat.request_id.startswith("task-")


def test_beat_schedule_has_the_heartbeat():
    assert app.conf.beat_schedule["heartbeat"]["task"] == "stores.heartbeat"


def test_task_settings_follow_the_design():
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_healthz_reports_heartbeat_age(client, db):
    assert client.get("/healthz").json()["worker_heartbeat_age_s"] is None
    heartbeat("worker")
    age = client.get("/healthz").json()["worker_heartbeat_age_s"]
    assert 0 <= age < 5
