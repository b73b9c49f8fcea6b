"""The connector under real Celery worker processes on the real broker: a pull killed mid-run (SIGKILL of the
worker's process group) is resumed by the next worker without loss or duplicates, and a decision is pushed by a
worker after its commit."""

from __future__ import annotations

from collections import Counter

import pytest

from aftersales import services
from aftersales.models import AfterSalesRequest, OperationLog
from aftersales.oplog import Performer
from aftersales.tiktok import tasks
from aftersales.tiktok.models import PlatformDecision, StoreLink, SyncRun
from tests.emulators.tiktok import Fault, TikTokEmulator
from tests.test_sla_workers import output, purge, start_worker, stop, wait_for
from tests.tiktok_support import link_store

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SEARCH = "/return_refund/202309/returns/search"


@pytest.fixture
def emulator():
    emu = TikTokEmulator(opaque_page_tokens=True).start()
    yield emu
    emu.stop()


def test_a_pull_killed_mid_run_is_resumed_by_the_next_worker(emulator, tenants):
    linked = link_store(emulator, tenants[0].stores[0])
    returns = [emulator.add_return(linked.shop_id) for _ in range(160)]
    # Every search page answers slowly, so the kill lands while a window is being read.
    emulator.faults.extend([Fault(0, delay=1.0, path=SEARCH)] * 10)
    purge()
    worker = start_worker("tts-sync-1")
    try:
        tasks.sync_store.delay(linked.store.pk, "schedule")
        assert wait_for(lambda: len([s for s in emulator.seen if s["path"] == SEARCH]) >= 2, timeout=120), \
            output(worker)
    finally:
        stop(worker, kill=True)
    link = StoreLink.objects.unscoped().get(pk=linked.link.pk)
    done = AfterSalesRequest.objects.unscoped().filter(store=linked.store).count()
    assert link.lease_owner and link.progress.get("kind") == "returns", (link.progress, done)  # died holding it
    assert 0 < done < 160
    # The lease lapses (as it would after TTS_SYNC_LEASE_SECONDS); the next worker takes the store over.
    StoreLink.objects.unscoped().filter(pk=link.pk).update(lease_until=link.lease_until.replace(year=2000))
    emulator.faults.clear()
    worker = start_worker("tts-sync-2")
    try:
        tasks.sync_store.delay(linked.store.pk, "schedule")
        assert wait_for(lambda: SyncRun.objects.unscoped().filter(store=linked.store, status="succeeded").exists(),
                        timeout=120), output(worker)
    finally:
        stop(worker)
    run = SyncRun.objects.unscoped().get(store=linked.store, status="succeeded")
    assert run.counts.get("resumed") == 1
    ids = list(AfterSalesRequest.objects.unscoped().filter(store=linked.store).values_list("return_id", flat=True))
    assert sorted(ids) == sorted(r["return_id"] for r in returns)
    intakes = Counter(OperationLog.objects.filter(store_id=linked.store.pk, action="intake")
                      .values_list("ticket_id", flat=True))
    assert len(intakes) == 160 and set(intakes.values()) == {1}


def test_a_decision_is_pushed_by_a_worker_after_commit(emulator, tenants):
    linked = link_store(emulator, tenants[0].stores[0])
    obj = emulator.add_return(linked.shop_id, return_type="REFUND")
    from aftersales.tiktok import sync

    sync.refresh_objects(linked.store.pk, "returns", [obj["return_id"]], trigger="manual")
    ticket = AfterSalesRequest.objects.unscoped().get(store=linked.store, return_id=obj["return_id"])
    purge()
    worker = start_worker("tts-push")
    try:
        services.approve(Performer.of(tenants[0].actor(tenants[0].owner)), ticket.public_id, "APPROVE_REFUND")
        assert wait_for(lambda: PlatformDecision.objects.unscoped().filter(ticket=ticket, status="confirmed")
                        .exists(), timeout=60), output(worker)
    finally:
        stop(worker)
    assert [d["key"] for d in emulator.decisions] == [PlatformDecision.objects.unscoped().get(ticket=ticket)
                                                      .idempotency_key]
