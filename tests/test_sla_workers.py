"""The SLA sweep under real Celery worker processes on the real broker: killed mid-sweep, and 50 at once.

Workers run as separate processes (``celery -A config worker``) against the test database, so SIGKILL is a
real process death: the open transaction is rolled back by Postgres and the row locks go with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from aftersales import sla, tasks
from aftersales.models import Compensation, OperationLog, ServiceScoreEntry, SlaBreach
from config.celery import app
from tests.test_sla import age, ticket_in
from tests.test_tracking import store_in

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def start_worker(name: str, *, pool: str = "solo", concurrency: int = 1) -> subprocess.Popen:
    """A worker process on the test database and the broker this test process publishes to."""
    db = connection.settings_dict
    host, port = str(db["HOST"] or ""), str(db["PORT"] or "")
    if host.startswith("/"):  # the embedded default listens on a Unix socket only
        url = f"postgres://{db['USER']}@/{db['NAME']}?host={host}"
    else:
        url = f"postgres://{db['USER']}@{host or '127.0.0.1'}:{port or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": url,
           "CELERY_BROKER_URL": str(app.conf.broker_url)}
    log = tempfile.NamedTemporaryFile(prefix=f"worker-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "warning", "-n", f"{name}@%h",
         "--pool", pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-Q", app.conf.task_default_queue],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker.log_path = log.name  # read by ``output`` when an assertion fails
    return worker


def output(worker: subprocess.Popen) -> str:
    return Path(worker.log_path).read_text(errors="replace")[-4000:]


def stop(worker: subprocess.Popen, *, kill: bool = False) -> None:
    """SIGTERM to the main process is Celery's warm shutdown (running tasks finish); SIGKILL hits the whole
    process group at once, pool children included — a machine losing power."""
    if worker.poll() is None:
        if kill:
            os.killpg(worker.pid, signal.SIGKILL)
        else:
            worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def purge() -> None:
    with app.connection() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_purge(app.conf.task_default_queue)


def wait_for(condition, timeout: float = 90, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def breaches() -> int:
    return SlaBreach.objects.count()


def assert_each_handled_once(tickets, stores) -> None:
    ids = [t.pk for t in tickets]
    assert not sla._due(sla.timezone.now()).filter(pk__in=ids).exists()
    per_ticket = dict(SlaBreach.objects.filter(ticket_id__in=ids).values("ticket_id")
                      .annotate(n=Count("id")).values_list("ticket_id", "n"))
    assert per_ticket == {pk: 1 for pk in ids}
    assert Compensation.objects.filter(ticket_id__in=ids).count() == len(ids)
    assert ServiceScoreEntry.objects.filter(breach__ticket_id__in=ids).count() == len(ids)
    assert OperationLog.objects.filter(ticket_id__in=ids, action="sla_breach").count() == len(ids)
    for store in stores:
        n = SlaBreach.objects.filter(store=store).count()
        store.refresh_from_db()
        assert store.service_score == max(Decimal("0"), Decimal("5") - Decimal("0.5") * n)
        # The ledger is serial: its score_after values are every step from 5 − 0.5 down, once each.
        steps = sorted(ServiceScoreEntry.objects.filter(store=store).values_list("score_after", flat=True))
        assert steps == sorted(max(Decimal("0"), Decimal("5") - Decimal("0.5") * k) for k in range(1, n + 1))


def backlog(tenants, per_store: int):
    a, _b = tenants
    stores = [store_in(a, "UK"), store_in(a, "MY"), store_in(a, "TH")]
    return stores, [age(ticket_in(store), 25) for store in stores for _ in range(per_store)]


def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(tenants):
    stores, tickets = backlog(tenants, 80)
    purge()
    worker = start_worker("killed")
    try:
        tasks.sweep_sla.delay(batch=1)  # one request per transaction: many commits to fall between
        assert wait_for(lambda: breaches() >= 5), output(worker)
        stop(worker, kill=True)
        halfway = breaches()
        assert 0 < halfway < len(tickets), halfway  # it really died mid-sweep
    finally:
        stop(worker, kill=True)
    time.sleep(1)
    assert breaches() == halfway  # nothing half-written arrives later
    purge()
    restarted = start_worker("restarted")
    try:
        tasks.sweep_sla.delay(batch=7)  # the next beat tick
        assert wait_for(lambda: breaches() == len(tickets), timeout=120), output(restarted)
    finally:
        stop(restarted)
    assert_each_handled_once(tickets, stores)


def test_fifty_concurrent_sweeps_compensate_each_request_exactly_once(tenants):
    stores, tickets = backlog(tenants, 70)
    purge()
    workers = [start_worker(f"w{i}", pool="prefork", concurrency=4) for i in range(2)]
    try:
        for _ in range(50):
            tasks.sweep_sla.delay(batch=3)  # small batches: the sweeps overlap on the same backlog
        assert wait_for(lambda: breaches() == len(tickets), timeout=120), output(workers[0]) + output(workers[1])
        with app.connection() as conn:  # every sweep was taken off the queue
            assert wait_for(lambda: conn.default_channel.queue_declare(
                app.conf.task_default_queue, durable=True, auto_delete=False).message_count == 0, timeout=60)
    finally:
        for worker in workers:
            stop(worker)  # warm shutdown: running sweeps finish first
    assert_each_handled_once(tickets, stores)
