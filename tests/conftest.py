"""Every fixture set has two agencies, so every test can ask: does the other tenant leak in?"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from stores import services
from stores.models import Agency, Market, Membership, Role, Store
from stores.scoping import Actor
from tests.factories import StoreFactory, UserFactory


@dataclass
class Tenant:
    agency: Agency
    owner: object
    agent: object  # sub-account: after-sales agent on the first 2 stores
    viewer: object  # sub-account: analyst (view only) on every store
    outsider: object  # sub-account with no role at all
    stores: list[Store] = field(default_factory=list)
    roles: dict[str, Role] = field(default_factory=dict)

    def actor(self, user) -> Actor:
        return services.actor_for_user(user)

    def membership(self, user) -> Membership:
        return Membership.objects.for_agency(self.agency).get(user=user)


def make_tenant(slug: str, n_stores: int = 3) -> Tenant:
    agency = services.create_agency(slug=slug, name=slug.title())
    markets = list(Market.objects.order_by("code"))
    stores = [StoreFactory(agency=agency, market=markets[i % len(markets)], name=f"{slug} store {i}")
              for i in range(n_stores)]
    owner, agent, viewer, outsider = (UserFactory(username=f"{slug}-{r}") for r in
                                      ("owner", "agent", "viewer", "outsider"))
    services.add_member(agency=agency, user=owner, owner=True)
    m_agent = services.add_member(agency=agency, user=agent)
    m_viewer = services.add_member(agency=agency, user=viewer)
    services.add_member(agency=agency, user=outsider)
    roles = {r.slug: r for r in Role.objects.for_agency(agency)}
    services.assign_role(actor=None, membership=m_agent, role=roles["aftersales-agent"], stores=stores[:2])
    services.assign_role(actor=None, membership=m_viewer, role=roles["analyst"], stores=stores)
    return Tenant(agency=agency, owner=owner, agent=agent, viewer=viewer, outsider=outsider,
                  stores=stores, roles=roles)


def add_tenant_rows(tenant: Tenant) -> None:
    """One row of every tenant-owned after-sales model, so scoping tests have something to leak."""
    from aftersales import evidence, replies
    from aftersales import services as aftersales_services

    agency, stores = tenant.agency, tenant.stores
    owner_actor = services.actor_for_user(tenant.owner)
    ticket, _ = aftersales_services.intake(stores[-1], platform_return(buyer_user_id=f"{agency.slug}-buyer"))
    evidence.add_buyer_evidence(ticket.pk, videos=[{"url": "https://video.example.com/unboxing.mp4"}])
    replies.create_quick_reply(owner_actor, title="Refund on its way", body="已为您安排极速退款，预计2小时内到账")
    replies.create_quick_reply(owner_actor, title="Photo please", body="Please send a photo of the label.",
                               store=stores[-1])
    aftersales_services.raise_alert(ticket, "review_failed", error_code="ERR_REVIEW_002")
    from aftersales import rules

    rules.create_rule(owner_actor, name="Tag", action="tag", params={"tags": ["x"]}, store=stores[-1])
    _sla_rows(tenant, ticket)
    _logistics_rows(tenant, ticket)
    from aftersales.models import Job

    Job.objects.create(agency=agency, created_by=tenant.owner, kind="export")
    from django.utils import timezone

    from aftersales.models import OrderVolume

    OrderVolume.objects.create(agency=agency, store=stores[-1], day=timezone.now().date(), category="apparel",
                               units_sold=10)
    _connector_rows(tenant, ticket)
    from aftersales import analytics

    analytics.refresh(agency.pk)  # the dashboard's rollup rows (after every row above they sum)


def _connector_rows(tenant: Tenant, ticket) -> None:
    """A partner app, an authorisation linking the ticket's store, a sync run, a webhook and an outbox row."""
    from aftersales.tiktok.models import (
        PartnerApp,
        PlatformDecision,
        SellerAuthorization,
        StoreLink,
        SyncRun,
        WebhookDelivery,
    )

    agency, store = tenant.agency, ticket.store
    app = PartnerApp.objects.create(agency=agency, name="App", app_key=f"{agency.slug}-key",
                                    app_secret=f"{agency.slug}-secret")
    auth = SellerAuthorization.objects.create(agency=agency, app=app, open_id=f"{agency.slug}-open",
                                              access_token=f"{agency.slug}-access", refresh_token=f"{agency.slug}-r")
    StoreLink.objects.create(agency=agency, store=store, authorization=auth, sync_enabled=False)
    SyncRun.objects.create(agency=agency, store=store, trigger="manual", status="succeeded", counts={"created": 1})
    WebhookDelivery.objects.create(agency=agency, app=app, notification_id=f"{agency.slug}-n1", type=12,
                                   shop_id=store.shop_id, store=store, outcome="processed")
    PlatformDecision.objects.create(agency=agency, ticket=ticket, operation="approve", decision="APPROVE_REFUND",
                                    idempotency_key=f"{agency.slug}-decision-1", status="confirmed")


def _sla_rows(tenant: Tenant, ticket) -> None:
    from decimal import Decimal

    from django.utils import timezone

    from aftersales.models import Compensation, ServiceScoreEntry, SlaBreach

    now, agency, store = timezone.now(), tenant.agency, tenant.stores[-1]
    breach = SlaBreach.objects.create(agency=agency, store=store, ticket=ticket, kind="platform", due_at=now,
                                      created_at=now)
    Compensation.objects.create(agency=agency, store=store, ticket=ticket, breach=breach, amount=Decimal("1.00"),
                                currency=ticket.currency, status="granted", created_at=now)
    ServiceScoreEntry.objects.create(agency=agency, store=store, breach=breach, delta=Decimal("-0.50"),
                                     score_after=Decimal("4.50"), created_at=now)


def _logistics_rows(tenant: Tenant, ticket) -> None:
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from logistics.models import (
        Carrier,
        Interception,
        ReturnAddress,
        ReturnLabel,
        ReturnShipment,
        WebhookEndpoint,
    )

    now, agency, store = timezone.now(), tenant.agency, tenant.stores[-1]
    carrier = Carrier.objects.get(code="other")
    ReturnShipment.objects.create(agency=agency, ticket=ticket, carrier=carrier, tracking_number=f"{agency.slug}1",
                                  format_check="unverified", registered_at=now)
    Interception.objects.create(agency=agency, ticket=ticket, tracking_number=f"{agency.slug}2", requested_at=now)
    ReturnAddress.objects.create(agency=agency, store=store, market=store.market, warehouse="Main", contact_name="Li",
                                 phone="+6281234567890", line1="Jl. Sudirman 1", city="Jakarta", is_default=True)
    ReturnLabel.objects.create(agency=agency, ticket=ticket, carrier=carrier, tracking_number=f"{agency.slug}1",
                               file=ContentFile(b"%PDF-1.4 test", name="label.pdf"))
    WebhookEndpoint.objects.create(agency=agency, provider="aftership", secret=f"{agency.slug}-secret")


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language: a request in zh-hans (LocaleMiddleware) leaves that language
    active in the test's thread, and a later test in the same process would read its messages in Chinese."""
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture
def tenants_with_rows(tenants):
    for tenant in tenants:
        add_tenant_rows(tenant)
    return tenants


@pytest.fixture
def tenants(db):
    a = make_tenant("alpha")
    b = make_tenant("bravo")
    services.create_api_token(user=a.agent, name="fixture")
    services.create_api_token(user=b.agent, name="fixture")
    return a, b


@pytest.fixture
def api():
    def client_for(user=None, token: bool = True) -> APIClient:
        client = APIClient()
        if user is not None:
            if token:
                _token, key = services.create_api_token(user=user, name="test")
                client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            else:
                client.force_login(user)
        return client

    return client_for


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let transactional tests empty the operation log between tests (TRUNCATE only, test DB only).

    The append-only trigger refuses TRUNCATE unless the database sets aftersales.allow_log_truncate;
    UPDATE and DELETE stay refused here too.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" '
                           "SET aftersales.allow_log_truncate = 'on'")
        connection.close()  # the setting applies to new sessions


def platform_return(**overrides) -> dict:
    """A return object shaped like Search Returns (reference §1.3), amounts as strings."""
    import time

    n = next(_return_ids)
    data = {
        "return_id": f"RET{n:08d}",
        "order_id": f"ORD{n:08d}",
        "return_type": "REFUND",
        "return_status": "RETURN_OR_REFUND_REQUEST_PENDING",
        "role": "BUYER",
        "return_reason": "ecom_order_delivered_refund_and_return_reason_wrong_product_seller",
        "return_reason_text": "色差 / colour difference",
        "buyer_user_id": "buyer-1",
        "buyer_name": "Alex Buyer",
        "refund_amount": {"currency": "USD", "refund_total": "25.00", "refund_subtotal": "22.00",
                          "refund_shipping_fee": "3.00", "refund_tax": "0"},
        "seller_next_action_response": [{"action": "SELLER_RESPOND_REFUND", "deadline": int(time.time()) + 86400}],
        "shipment_type": "PLATFORM",
        "handover_method": "DROP_OFF",
        "return_line_items": [{"return_line_item_id": "L1", "order_line_item_id": "OL1", "sku_id": "SKU1",
                               "seller_sku": "TSHIRT-RED-M", "sku_name": "Red / M", "product_name": "Cotton T-shirt",
                               "category": "apparel", "refund_amount": {"currency": "USD", "refund_total": "22.00"}}],
        "create_time": int(time.time()) - 3600,
        "update_time": int(time.time()) - 60,
    }
    data.update(overrides)
    return data


_return_ids = iter(range(1, 10**9))
