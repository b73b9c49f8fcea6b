"""seed_demo: idempotent per slug, separate agencies, logins as API.md fixes them."""

import pytest
from django.core.management import call_command

from stores import services
from stores.models import Agency, Market, Membership, Store
from stores.permissions import StorePerm


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_seed_demo_is_idempotent_and_per_slug(db, capsys):
    call_command("seed_demo", "--tickets", "25")
    call_command("seed_demo", "--tickets", "25")
    call_command("seed_demo", "--agency", "acme", "--tickets", "2")
    out = capsys.readouterr().out
    assert "demo-owner / " in out and "acme-viewer / " in out
    demo, acme = Agency.objects.get(slug="demo"), Agency.objects.get(slug="acme")
    for agency in (demo, acme):
        stores = Store.objects.for_agency(agency)
        assert stores.count() == 12
        assert set(stores.values_list("market__code", flat=True)) == set(Market.objects.values_list("code", flat=True))
        assert Membership.objects.for_agency(agency).count() == 3
        # Units sold for the return rate (what an ERP would send), once per store, day and category.
        from aftersales.models import OrderVolume

        volumes = OrderVolume.objects.for_agency(agency)
        assert volumes.exists() and volumes.filter(units_sold__gt=0).count() == volumes.count()
        # Every demo login has an address, so alert digests show up (var/mail/ locally).
        assert all(m.user.email == f"{m.user.username}@example.com"
                   for m in Membership.objects.for_agency(agency).select_related("user"))
    agent = services.actor_for_user(Membership.objects.get(user__username="demo-agent").user)
    viewer = services.actor_for_user(Membership.objects.get(user__username="demo-viewer").user)
    assert Store.objects.for_actor(agent).count() == 4
    assert Store.objects.for_actor(agent, StorePerm.HANDLE_AFTERSALES).count() == 4
    assert Store.objects.for_actor(viewer).count() == 12
    assert Store.objects.for_actor(viewer, StorePerm.HANDLE_AFTERSALES).count() == 0
    assert not Store.objects.for_actor(agent).filter(agency=acme).exists()


def test_seed_demo_requests_cover_every_state_with_logs(db):
    from django.db.models import Count

    from aftersales.models import AfterSalesRequest, OperationLog
    from aftersales.states import State

    call_command("seed_demo", "--tickets", "25")
    demo = Agency.objects.get(slug="demo")
    tickets = AfterSalesRequest.objects.for_agency(demo)
    assert tickets.count() == 12 * 25
    assert set(tickets.values_list("state", flat=True)) == set(State)
    assert tickets.filter(platform_status_unknown=True).exists()
    # Every request has its intake row, and rows exist for every action taken.
    assert not tickets.annotate(n=Count("logs")).filter(n=0).exists()
    assert OperationLog.objects.filter(agency_id=demo.pk, action="intake").count() == 12 * 25
    from aftersales.models import Evidence

    assert Evidence.objects.for_agency(demo).filter(role="buyer", kind="image").exists()
    assert Evidence.objects.for_agency(demo).filter(role="seller").exists()
    assert {"approve", "reject", "refund", "arbitration", "buyer_shipped", "close", "upload_evidence"} <= set(
        OperationLog.objects.filter(agency_id=demo.pk).values_list("action", flat=True))


def test_seed_demo_logistics_addresses_parcels_and_dropoffs(db):
    from logistics import services as logistics_services
    from logistics.addresses import default_return_address
    from logistics.models import DropOffPoint, ReturnShipment

    call_command("seed_demo", "--tickets", "25")
    demo = Agency.objects.get(slug="demo")
    assert all(default_return_address(s) is not None for s in Store.objects.for_agency(demo))
    shipments = ReturnShipment.objects.for_agency(demo)
    assert shipments.exists() and shipments.filter(first_scan_at__isnull=False).exists()
    assert DropOffPoint.objects.filter(market__code="ID").count() > 100
    # The overdue ones are stalled by the very first sweep.
    assert logistics_services.sweep_scan_watch() == shipments.filter(stalled_at__isnull=False).count() > 0


def test_create_api_token_prints_key_last(db, capsys):
    call_command("seed_demo", "--tickets", "0")
    call_command("create_api_token", "demo-agent")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("ast_") and len(key) > 40
    assert services.authenticate_token(key).user.username == "demo-agent"
