"""Logistics back office: reference data editable, records read-only, webhook secrets never shown."""

import pytest
from django.urls import reverse

from logistics.models import WebhookEndpoint
from tests.conftest import add_tenant_rows

PAGES = ["carrier", "returnshipment", "interception", "returnaddress", "dropoffpoint", "returnlabel",
         "webhookendpoint", "webhookreceipt"]


@pytest.mark.parametrize("model", PAGES)
def test_changelists_load(admin_client, tenants, model):
    for tenant in tenants:
        add_tenant_rows(tenant)
    assert admin_client.get(reverse(f"admin:logistics_{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", ["returnshipment", "interception", "returnlabel", "webhookreceipt",
                                   "returnaddress"])
def test_records_cannot_be_added(admin_client, db, model):
    assert admin_client.get(reverse(f"admin:logistics_{model}_add")).status_code == 403


def test_webhook_secret_is_write_only(admin_client, tenants):
    a, _b = tenants
    add_tenant_rows(a)
    endpoint = WebhookEndpoint.objects.for_agency(a.agency).get()
    url = reverse("admin:logistics_webhookendpoint_change", args=[endpoint.pk])
    page = admin_client.get(url).content.decode()
    assert endpoint.secret not in page
    response = admin_client.post(url, {"agency": a.agency.pk, "provider": "aftership", "secret": "",
                                       "is_active": "on"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret == "alpha-secret"  # an empty field keeps the stored secret


def test_carrier_is_editable_reference_data(admin_client, db):
    from logistics.models import Carrier

    carrier = Carrier.objects.get(code="sicepat")
    page = admin_client.get(reverse("admin:logistics_carrier_change", args=[carrier.pk]))
    assert page.status_code == 200 and 'name="pattern"' in page.content.decode()
