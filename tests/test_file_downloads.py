"""Stored files are served only through the scoping gate: a URL alone never shows another tenant's file."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from aftersales import evidence, services
from aftersales.oplog import Performer
from tests.conftest import add_tenant_rows, platform_return


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 100, 50)).save(out, "JPEG")
    return out.getvalue()


def uploaded(tenant):
    ticket, _ = services.intake(tenant.stores[0], platform_return())
    return evidence.upload_evidence(Performer.of(tenant.actor(tenant.owner)), ticket.pk,
                                    SimpleUploadedFile("x.png", jpeg()))


def test_evidence_photo_for_members_of_its_stores_only(client, tenants):
    a, b = tenants
    item = uploaded(a)
    url = f"/files/evidence/{item.public_id}/"
    assert client.get(url).status_code == 302  # login first
    client.force_login(a.agent)  # granted on stores[0]
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == jpeg()
    for outsider in (a.outsider, b.owner):  # ungranted in the same agency, and another tenant
        client.force_login(outsider)
        assert client.get(url).status_code == 404


def test_staff_download_and_label_pdf(client, admin_user, tenants):
    a, b = tenants
    add_tenant_rows(a)
    from logistics.models import ReturnLabel

    label = ReturnLabel.objects.for_agency(a.agency).get()
    client.force_login(admin_user)
    response = client.get(f"/files/labels/{label.public_id}.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    client.force_login(b.owner)
    assert client.get(f"/files/labels/{label.public_id}.pdf").status_code == 404
    client.force_login(a.owner)
    assert client.get(f"/files/labels/{label.public_id}.pdf").status_code == 200
