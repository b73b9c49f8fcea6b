"""Back-office admin of the after-sales core: read-only pages, service-backed actions, constant queries."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from aftersales import oplog, services
from aftersales.models import AfterSalesRequest, Evidence, OperationLog, QuickReply, SensitiveWord
from aftersales.states import State
from stores import errors
from stores.errors import AppError
from stores.models import Market, MarketPolicy
from tests.conftest import platform_return

CHANGELIST = "admin:aftersales_aftersalesrequest_changelist"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def make(store, **overrides) -> AfterSalesRequest:
    ticket, created = services.intake(store, platform_return(**overrides))
    assert created
    return ticket


def exchange(store) -> AfterSalesRequest:
    return make(store, return_type="REPLACEMENT", return_status="REPLACEMENT_REQUEST_PENDING")


def change_url(ticket) -> str:
    return reverse("admin:aftersales_aftersalesrequest_change", args=[ticket.pk])


def listed(client, **params) -> set[int]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")
    return {t.pk for t in response.context["cl"].result_list}


def act(client, action: str, tickets) -> list[tuple[int, str]]:
    response = client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [t.pk for t in tickets]})
    assert response.status_code == 302
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def fresh(ticket) -> AfterSalesRequest:
    return AfterSalesRequest.objects.unscoped().get(pk=ticket.pk)


# --- request list ---------------------------------------------------------------------------------
def test_changelist_filters_and_search(admin_client, tenants):
    a, b = tenants
    fixture_rows = set(AfterSalesRequest.objects.unscoped().values_list("pk", flat=True))
    first = make(a.stores[0])
    unknown = make(b.stores[1], return_status="SOMETHING_THE_PLATFORM_ADDED")
    approved = make(a.stores[2])
    services.approve(oplog.SYSTEM, approved.pk, "APPROVE_REFUND")
    swap = exchange(b.stores[2])

    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    content = response.content.decode()
    shown = {t.pk for t in response.context["cl"].result_list}
    assert shown - fixture_rows == {first.pk, unknown.pk, approved.pk, swap.pk}
    assert "⚠ SOMETHING_THE_PLATFORM_ADDED (unknown)" in content  # flagged visibly
    assert "25.00 USD" in content
    assert "ERR_SYNC_001" in content  # the error-code filter offers the codes present in the log

    assert listed(admin_client, store__market__id__exact=a.stores[0].market_id) == {first.pk}
    assert listed(admin_client, store__id__exact=b.stores[1].pk) == {unknown.pk}
    assert listed(admin_client, state__exact=State.REFUND_APPROVED) == {approved.pk}
    assert listed(admin_client, type__exact="exchange") == {swap.pk}
    assert listed(admin_client, error_code="ERR_SYNC_001") == {unknown.pk}
    assert listed(admin_client, error_code="ERR_STATE_001") == set()
    assert listed(admin_client, platform_status_unknown__exact="1") == {unknown.pk}
    assert listed(admin_client, q=first.order_id) == {first.pk}
    assert listed(admin_client, q=unknown.return_id) == {unknown.pk}
    assert listed(admin_client, q="no-such-id") == set()


def test_error_code_filter_finds_requests_with_a_refused_action(admin_client, tenants):
    a, _b = tenants
    refused, other = make(a.stores[0]), make(a.stores[0])
    with pytest.raises(AppError):
        services.close(oplog.SYSTEM, refused.pk)  # pending review cannot be closed: logged with its code
    assert listed(admin_client, error_code="ERR_STATE_001") == {refused.pk}
    assert other.pk in listed(admin_client)


def test_changelist_queries_do_not_grow_with_requests(admin_client, tenants):
    a, b = tenants
    stores = a.stores + b.stores

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse(CHANGELIST)).status_code == 200
        return len(ctx.captured_queries)

    for i in range(3):
        make(stores[i % len(stores)], return_status="NEW_STATUS" if i == 0 else "RETURN_OR_REFUND_REQUEST_PENDING")
    count()  # warm per-process caches (content types, site)
    small = count()
    for i in range(27):
        make(stores[i % len(stores)])
    large = count()
    assert AfterSalesRequest.objects.unscoped().count() == 30
    assert large == small


# --- request page ---------------------------------------------------------------------------------
def test_change_page_shows_timeline_with_error_codes_and_hints(admin_client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_status="MYSTERY_STATUS")
    with pytest.raises(AppError):
        services.close(oplog.SYSTEM, ticket.pk)

    response = admin_client.get(change_url(ticket))
    assert response.status_code == 200
    content = response.content.decode()
    for error in (errors.ERR_SYNC_001, errors.ERR_STATE_001):
        assert error.code in content
        assert escape(str(error.message)) in content
        assert escape(str(error.hint)) in content
    # Oldest first: intake, the unknown status, then the refused close.
    assert content.index("ERR_SYNC_001") < content.index("ERR_STATE_001")
    assert "&quot;raw_status&quot;: &quot;MYSTERY_STATUS&quot;" in content  # payload as pretty JSON
    assert "Cotton T-shirt" in content  # line items inline


def test_change_page_is_read_only(admin_client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    response = admin_client.get(change_url(ticket))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="state"' not in content
    assert 'name="refund_total"' not in content
    assert 'name="_save"' not in content
    assert "Pending review" in content

    response = admin_client.post(change_url(ticket), {"state": State.CLOSED, "refund_total": "1.00"})
    assert response.status_code == 403
    ticket = fresh(ticket)
    assert ticket.state == State.PENDING_REVIEW and ticket.refund_total == Decimal("25.00")

    assert admin_client.get(reverse("admin:aftersales_aftersalesrequest_add")).status_code == 403
    assert admin_client.get(reverse("admin:aftersales_aftersalesrequest_delete", args=[ticket.pk])).status_code == 403
    actions = admin_client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    assert "delete_selected" not in {name for name, _label in actions}


def test_timeline_inline_renders_in_constant_queries(admin_client, tenants, django_assert_max_num_queries):
    a, _b = tenants
    small, large = make(a.stores[0]), make(a.stores[0])
    for i in range(4):
        services.apply_platform_status(small.pk, f"MYSTERY_{i}")
    for i in range(49):
        services.apply_platform_status(large.pk, f"MYSTERY_{i}")
    assert small.logs.count() == 5 and large.logs.count() == 50

    def count(ticket) -> tuple[int, str]:
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.get(change_url(ticket))
        assert response.status_code == 200
        return len(ctx.captured_queries), response.content.decode()

    count(small)  # warm per-process caches
    n_small, _content = count(small)
    n_large, content = count(large)
    assert n_large == n_small
    assert content.count("MYSTERY_48") >= 1 and content.count(escape(str(errors.ERR_SYNC_001.hint))) == 49
    with django_assert_max_num_queries(n_small):
        admin_client.get(change_url(large))


def test_evidence_inline_links_files_and_videos(admin_client, tenants, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    a, _b = tenants
    ticket = make(a.stores[0])
    image = Evidence.objects.create(agency=a.agency, ticket=ticket, role=Evidence.Role.BUYER,
                                    kind=Evidence.Kind.IMAGE, content_type="image/png",
                                    file=SimpleUploadedFile("photo.png", PNG, content_type="image/png"))
    video = Evidence.objects.create(agency=a.agency, ticket=ticket, role=Evidence.Role.BUYER,
                                    kind=Evidence.Kind.VIDEO, url="https://video.example.com/unboxing.mp4")
    content = admin_client.get(change_url(ticket)).content.decode()
    url = reverse("portal:evidence_file", args=[image.public_id])
    assert f'<img src="{url}"' in content  # served through the scoping gate, never as public media
    assert admin_client.get(url).status_code == 200
    assert 'href="https://video.example.com/unboxing.mp4"' in content

    response = admin_client.get(reverse("admin:aftersales_evidence_changelist"), {"q": ticket.return_id})
    assert response.status_code == 200
    assert {e.pk for e in response.context["cl"].result_list} == {image.pk, video.pk}
    page = admin_client.get(reverse("admin:aftersales_evidence_change", args=[image.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.get(reverse("admin:aftersales_evidence_add")).status_code == 403


# --- actions --------------------------------------------------------------------------------------
def test_approve_action_runs_services_and_reports_each_outcome(admin_client, admin_user, tenants):
    a, b = tenants
    refund_only = make(a.stores[0])
    already = make(a.stores[0])
    services.approve(oplog.SYSTEM, already.pk, "APPROVE_REFUND")
    return_refund = make(a.stores[1], return_type="RETURN_AND_REFUND")
    swap = exchange(b.stores[0])

    result = act(admin_client, "approve_by_type", [refund_only, already, return_refund, swap])

    failures = [text for level, text in result if level == 40]  # messages.ERROR
    successes = [text for level, text in result if level == 25]  # messages.SUCCESS
    assert len(failures) == 1 and failures[0].startswith(f"[ERR_STATE_001] {errors.ERR_STATE_001.message}")
    assert already.return_id in failures[0]
    assert len(successes) == 1 and successes[0].startswith("3 requests approved")
    assert all(t.return_id in successes[0] for t in (refund_only, return_refund, swap))

    assert fresh(refund_only).state == State.REFUND_APPROVED
    assert fresh(return_refund).state == State.AWAITING_RETURN
    assert fresh(swap).state == State.REPLACEMENT_APPROVED
    assert fresh(already).state == State.REFUND_APPROVED

    for ticket in (refund_only, already, return_refund, swap):
        row = ticket.logs.order_by("-id").first()
        assert (row.action, row.actor_kind, row.actor_label, row.actor_user_id) == (
            "approve", "system", "admin:admin", admin_user.pk)
        assert row.request_id  # the admin request's id travels into the log
    assert already.logs.order_by("-id").first().error_code == "ERR_STATE_001"
    assert refund_only.logs.order_by("-id").first().payload == {"decision": "APPROVE_REFUND"}


def test_request_evidence_and_close_actions(admin_client, tenants):
    a, _b = tenants
    waiting, pending = make(a.stores[0]), make(a.stores[1])

    result = act(admin_client, "request_more_evidence", [waiting])
    assert result == [(25, f"Evidence requested on 1 request: {waiting.return_id}")]
    assert fresh(waiting).state == State.AWAITING_BUYER

    result = act(admin_client, "close_requests", [waiting, pending])
    assert (25, f"1 request closed: {waiting.return_id}") in result
    assert [text for level, text in result if level == 40] == [
        f"[ERR_STATE_001] {errors.ERR_STATE_001.message} Requests: {pending.return_id}"]
    assert fresh(waiting).state == State.CLOSED and fresh(pending).state == State.PENDING_REVIEW
    assert [(r.action, r.actor_label, r.error_code) for r in pending.logs.order_by("id")] == [
        ("intake", "TikTok Shop", ""), ("close", "admin:admin", "ERR_STATE_001")]


def test_view_only_staff_get_no_actions(client, tenants):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    a, _b = tenants
    ticket = make(a.stores[0])
    staff = UserFactory(username="support-desk", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="aftersales", codename__in=["view_aftersalesrequest", "view_operationlog"]))
    client.force_login(staff)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200 and response.context["action_form"] is None
    assert client.post(reverse(CHANGELIST), {"action": "close_requests", "_selected_action": [ticket.pk]}
                       ).status_code in (200, 302)
    assert fresh(ticket).state == State.PENDING_REVIEW and ticket.logs.count() == 1
    assert client.get(change_url(ticket)).status_code == 200


# --- operation log --------------------------------------------------------------------------------
def test_operation_log_admin_is_view_only_with_filters(admin_client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_status="MYSTERY_STATUS")
    act(admin_client, "close_requests", [ticket])  # refused: a row with a request id and ERR_STATE_001
    refused = ticket.logs.get(error_code="ERR_STATE_001")
    assert refused.request_id

    url = reverse("admin:aftersales_operationlog_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["action_form"] is None

    def rows(**params) -> set[int]:
        res = admin_client.get(url, params)
        assert res.status_code == 200
        return {r.pk for r in res.context["cl"].result_list}

    every = set(ticket.logs.values_list("pk", flat=True))
    assert len(every) == 3
    assert rows(error_code="ERR_STATE_001") == {refused.pk}
    assert rows(error_code="ERR_SYNC_001") == set(ticket.logs.filter(error_code="ERR_SYNC_001")
                                                  .values_list("pk", flat=True))
    assert rows(action="intake") == set(ticket.logs.filter(action="intake").values_list("pk", flat=True))
    assert rows(actor_kind__exact="system") == {refused.pk}
    assert rows(created_at__year=refused.created_at.year) == every
    assert rows(q=ticket.order_id) == every
    assert rows(q=refused.request_id) == {refused.pk}

    page = admin_client.get(reverse("admin:aftersales_operationlog_change", args=[refused.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="_save"' not in content and 'name="action"' not in content
    assert escape(str(errors.ERR_STATE_001.hint)) in content and "admin:admin" in content
    assert admin_client.post(reverse("admin:aftersales_operationlog_change", args=[refused.pk]),
                             {"action": "forged"}).status_code == 403
    assert admin_client.get(reverse("admin:aftersales_operationlog_add")).status_code == 403
    assert admin_client.get(reverse("admin:aftersales_operationlog_delete", args=[refused.pk])).status_code == 403
    assert OperationLog.objects.get(pk=refused.pk).action == "close"


# --- quick replies, sensitive words, market policies ---------------------------------------------
def test_quick_reply_admin_lists_and_searches_read_only(admin_client, tenants):
    a, b = tenants
    mine = QuickReply.objects.create(agency=a.agency, store=a.stores[0], title="Colour", body="Sorry about {x}")
    QuickReply.objects.create(agency=b.agency, title="Refund", body="Refunded")
    url = reverse("admin:aftersales_quickreply_changelist")
    response = admin_client.get(url, {"q": "Colour"})
    assert response.status_code == 200 and list(response.context["cl"].result_list) == [mine]
    page = admin_client.get(reverse("admin:aftersales_quickreply_change", args=[mine.pk]))
    assert page.status_code == 200 and 'name="body"' not in page.content.decode()
    assert admin_client.get(reverse("admin:aftersales_quickreply_add")).status_code == 403


def test_sensitive_words_are_editable_policy_data(admin_client, db):
    market = Market.objects.get(code="US")
    add = reverse("admin:aftersales_sensitiveword_add")
    data = {"market": market.pk, "kind": "word", "value": "zz-telegram", "label": "off-platform contact",
            "is_active": "on"}
    assert admin_client.post(add, data).status_code == 302
    word = SensitiveWord.objects.get(value="zz-telegram")
    assert (word.market, word.kind, word.label, word.is_active) == (market, "word", "off-platform contact", True)

    duplicate = admin_client.post(add, data)
    assert duplicate.status_code == 200 and duplicate.context["adminform"].form.errors
    assert SensitiveWord.objects.filter(value="zz-telegram").count() == 1

    change = reverse("admin:aftersales_sensitiveword_change", args=[word.pk])
    assert admin_client.post(change, {**data, "market": "", "kind": "pattern", "value": r"zz-t\.me/\w+",
                                      "is_active": ""}).status_code == 302
    word.refresh_from_db()
    assert (word.market, word.kind, word.value, word.is_active) == (None, "pattern", r"zz-t\.me/\w+", False)
    response = admin_client.get(reverse("admin:aftersales_sensitiveword_changelist"), {"q": "zz-t"})
    assert list(response.context["cl"].result_list) == [word]


def test_market_policy_admin_edits_the_policy_not_the_market(admin_client, db):
    policy = MarketPolicy.objects.select_related("market").get(market__code="US")
    response = admin_client.get(reverse("admin:stores_marketpolicy_changelist"))
    assert response.status_code == 200 and policy in response.context["cl"].result_list

    url = reverse("admin:stores_marketpolicy_change", args=[policy.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="commission_rate"' in page and 'name="market"' not in page
    other = Market.objects.exclude(pk=policy.market_id).first()
    response = admin_client.post(url, {"market": other.pk, "commission_rate": "0.0650",
                                       "return_shipping_payer": "seller", "source": "Seller University 2026"})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.market.code, policy.commission_rate, policy.return_shipping_payer, policy.source) == (
        "US", Decimal("0.0650"), "seller", "Seller University 2026")

    invalid = admin_client.post(url, {"commission_rate": "1.5", "return_shipping_payer": "seller", "source": ""})
    assert invalid.status_code == 200 and "commission_rate" in invalid.context["adminform"].form.errors
    assert admin_client.get(reverse("admin:stores_marketpolicy_delete", args=[policy.pk])).status_code == 403


def test_approve_action_takes_the_received_package_decision_in_transit(admin_client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0], return_type="RETURN_AND_REFUND")
    services.approve(oplog.SYSTEM, ticket.pk, "APPROVE_RETURN")
    services.buyer_shipped(ticket.pk, tracking_number="9400111899223197428490")
    act(admin_client, "approve_by_type", [ticket])
    assert fresh(ticket).state == State.REFUND_APPROVED


def test_change_page_shows_fees(admin_client, tenants):
    a, _b = tenants
    ticket = make(a.stores[0])
    page = admin_client.get(change_url(ticket), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Commission returned: 2.00 USD at 8%" in page  # 8 % of the 25.00 refundable, before refund
    zh = admin_client.get(change_url(ticket), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "退还佣金" in zh


def test_stalled_and_breached_filters_and_tracking_search(admin_client, tenants):
    import datetime as dt

    from django.utils import timezone

    from logistics.models import ReturnShipment

    a, _b = tenants
    stalled, late, fine = make(a.stores[0]), make(a.stores[0]), make(a.stores[0])
    services.mark_stalled(stalled.pk, detail={})
    AfterSalesRequest.objects.unscoped().filter(pk=late.pk).update(
        platform_deadline=timezone.now() - dt.timedelta(hours=1))
    AfterSalesRequest.objects.unscoped().filter(pk=fine.pk).update(
        platform_deadline=timezone.now() + dt.timedelta(hours=5))
    ReturnShipment.objects.create(agency=a.agency, ticket=fine, tracking_number="RB123456785GB",
                                  format_check="verified", registered_at=timezone.now())
    assert listed(admin_client, stalled="yes") == {stalled.pk}
    assert late.pk in listed(admin_client, breached="yes") and fine.pk not in listed(admin_client, breached="yes")
    assert listed(admin_client, q="RB123456785GB") == {fine.pk}


@pytest.mark.parametrize("model", ["slabreach", "compensation", "servicescoreentry"])
def test_sla_records_are_listed_read_only(admin_client, tenants, model):
    from tests.conftest import add_tenant_rows

    add_tenant_rows(tenants[0])
    assert admin_client.get(reverse(f"admin:aftersales_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:aftersales_{model}_add")).status_code == 403


# --- auto-rules -----------------------------------------------------------------------------------
RULES = "admin:aftersales_autorule_changelist"


def rule_form(agency, *, store=None, name="Small refunds", action="tag", conditions='{}', params='{"tags": ["x"]}',
              position=0, is_active=True) -> dict:
    data = {"agency": agency.pk, "store": store.pk if store else "", "name": name, "position": position,
            "action": action, "conditions": conditions, "params": params}
    if is_active:
        data["is_active"] = "on"
    return data


def test_auto_rule_changelist_columns_filters_and_constant_queries(admin_client, tenants):
    from aftersales import rules

    a, b = tenants
    owner_a, owner_b = a.actor(a.owner), b.actor(b.owner)
    wide = rules.create_rule(owner_a, name="Approve small", action="approve",
                             conditions={"refund_total_lte": {"amount": "20", "currency": "USD"}})
    per_store = rules.create_rule(owner_a, name="Tag serial", action="tag", params={"tags": ["serial"]},
                                  conditions={"buyer_flags": ["serial_returner"]}, store=a.stores[1])
    off = rules.create_rule(owner_b, name="Escalate", action="escalate", is_active=False)

    def rows(**params) -> list:
        response = admin_client.get(reverse(RULES), params)
        assert response.status_code == 200
        return list(response.context["cl"].result_list)

    response = admin_client.get(reverse(RULES))
    content = response.content.decode()
    assert {r.pk for r in response.context["cl"].result_list} == {wide.pk, per_store.pk, off.pk}
    for text in ("Approve small", "Tag serial", "Escalate", str(a.stores[1]), "serial_returner", "Alpha", "Bravo"):
        assert escape(text) in content, text
    assert rows(action__exact="escalate") == [off]
    assert {r.pk for r in rows(is_active__exact="1")} == {wide.pk, per_store.pk}
    assert rows(scope="store") == [per_store]
    assert {r.pk for r in rows(scope="agency")} == {wide.pk, off.pk}
    assert {r.pk for r in rows(agency__id__exact=a.agency.pk)} == {wide.pk, per_store.pk}
    assert rows(store__id__exact=a.stores[1].pk) == [per_store]
    assert rows(q="serial") == [per_store]

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse(RULES)).status_code == 200
        return len(ctx.captured_queries)

    count()
    small = count()
    for i in range(12):
        rules.create_rule(owner_b, name=f"r{i}", action="tag", params={"tags": ["t"]}, store=b.stores[i % 3])
    assert count() == small


def test_auto_rule_form_shows_the_services_coded_errors_on_the_field(admin_client, tenants):
    from aftersales.models import AutoRule

    a, b = tenants
    add = reverse("admin:aftersales_autorule_add")

    def errors_of(data) -> dict:
        response = admin_client.post(add, data)
        assert response.status_code == 200
        return {k: [str(e) for e in v] for k, v in response.context["adminform"].form.errors.items()}

    found = errors_of(rule_form(a.agency, conditions='{"type_in": ["nope"], "buyer_flags": ["vip"]}'))
    assert set(found) == {"conditions"}
    assert "[ERR_VALIDATION] type_in: Unknown request type." in found["conditions"]
    assert any(e.startswith("[ERR_VALIDATION] buyer_flags: ") for e in found["conditions"])
    viewer = f'{{"user_ids": [{a.viewer.pk}]}}'  # view only: cannot handle what it would be given
    found = errors_of(rule_form(a.agency, store=a.stores[0], action="assign", params=viewer))
    assert found == {"params": ["[ERR_VALIDATION] user_ids: A list of members with after-sales handling on the store."]}
    found = errors_of(rule_form(a.agency, action="reply", params="{}"))
    assert found == {"params": ["[ERR_VALIDATION] reply_id: Required."]}
    found = errors_of(rule_form(a.agency, store=b.stores[0]))
    assert set(found) == {"store"}
    found = errors_of(rule_form(a.agency, conditions="not json"))
    assert set(found) == {"conditions"}
    assert not AutoRule.objects.for_agency(a.agency).exists()

    conditions = {"market_in": [a.stores[0].market.code.lower()], "buyer_not_flags": [" serial_returner "]}
    response = admin_client.post(add, rule_form(
        a.agency, store=a.stores[0], action="assign", params=f'{{"user_ids": [{a.agent.pk}, {a.owner.pk}]}}',
        conditions=json.dumps(conditions)))
    assert response.status_code == 302
    rule = AutoRule.objects.for_agency(a.agency).get()
    assert (rule.store, rule.action, rule.params) == (a.stores[0], "assign", {"user_ids": [a.agent.pk, a.owner.pk]})
    assert rule.conditions == {"market_in": [a.stores[0].market.code], "buyer_not_flags": ["serial_returner"]}

    response = admin_client.post(add, rule_form(a.agency, conditions=""))  # empty: every request
    assert response.status_code == 302
    assert AutoRule.objects.for_agency(a.agency).get(store__isnull=True).conditions == {}


def test_auto_rule_change_keeps_the_round_robin_unless_its_list_changes(admin_client, tenants):
    from aftersales import rules
    from aftersales.models import AutoRule

    a, _b = tenants
    rule = rules.create_rule(a.actor(a.owner), name="rr", action="assign",
                             params={"user_ids": [a.owner.pk, a.agent.pk]})
    rules.apply_rules(make(a.stores[0]).pk)
    rule.refresh_from_db()
    cursor = rule.params[rules.CURSOR]
    assert cursor == {str(a.stores[0].pk): 1}
    url = reverse("admin:aftersales_autorule_change", args=[rule.pk])
    page = admin_client.get(url).content.decode()
    assert "_cursor" not in page.split('name="params"')[1].split("</textarea>")[0]  # not an editable parameter

    ids = f'{{"user_ids": [{a.owner.pk}, {a.agent.pk}]}}'
    assert admin_client.post(url, rule_form(a.agency, name="renamed", action="assign", params=ids)).status_code == 302
    rule = AutoRule.objects.for_agency(a.agency).get(pk=rule.pk)
    assert rule.name == "renamed" and rule.params == {"user_ids": [a.owner.pk, a.agent.pk], rules.CURSOR: cursor}

    ids = f'{{"user_ids": [{a.agent.pk}]}}'
    assert admin_client.post(url, rule_form(a.agency, name="renamed", action="assign", params=ids)).status_code == 302
    assert AutoRule.objects.for_agency(a.agency).get(pk=rule.pk).params == {"user_ids": [a.agent.pk]}


def test_auto_rule_dry_run_on_the_page_and_as_an_action(admin_client, tenants):
    from aftersales import rules
    from aftersales.models import AutoRule

    a, b = tenants
    for i in range(3):
        make(a.stores[0], buyer_user_id="again")
        make(a.stores[1], buyer_user_id=f"once-{i}")
    make(b.stores[0], buyer_user_id="again")
    make(b.stores[0], buyer_user_id="again")
    owner_a = a.actor(a.owner)
    serial = rules.create_rule(owner_a, name="Serial", action="tag", params={"tags": ["s"]},
                               conditions={"buyer_flags": ["serial_returner"]})
    everyone = rules.create_rule(owner_a, name="All of store 2", action="escalate", store=a.stores[1])
    broken = rules.create_rule(owner_a, name="Broken", action="escalate")
    AutoRule.objects.for_agency(a.agency).filter(pk=broken.pk).update(conditions={"colour": "red"})

    # 3 from buyer "again" in a (b's 2 do not count): not yet a serial returner (5 requests in 90 days).
    assert rules.preview_saved_rule(serial)["would_match"] == 0
    make(a.stores[2], buyer_user_id="again")
    make(a.stores[2], buyer_user_id="again")
    assert rules.preview_saved_rule(serial)["would_match"] == 5

    page = admin_client.get(reverse("admin:aftersales_autorule_change", args=[serial.pk])).content.decode()
    assert "Would have matched 5 requests in the last 30 days." in page
    page = admin_client.get(reverse("admin:aftersales_autorule_change", args=[everyone.pk])).content.decode()
    assert "Would have matched 3 requests in the last 30 days." in page
    page = admin_client.get(reverse("admin:aftersales_autorule_change", args=[broken.pk])).content.decode()
    assert "[ERR_VALIDATION] colour: Unknown condition." in page
    add = admin_client.get(reverse("admin:aftersales_autorule_add")).content.decode()
    assert "Save the rule to see how many requests it would have matched." in add

    response = admin_client.post(reverse(RULES), {"action": "dry_run_selected",
                                                  "_selected_action": [serial.pk, everyone.pk, broken.pk]})
    assert response.status_code == 302
    shown = {(m.level, str(m)) for m in get_messages(response.wsgi_request)}
    assert (20, "Serial: Would have matched 5 requests in the last 30 days.") in shown
    assert (20, "All of store 2: Would have matched 3 requests in the last 30 days.") in shown
    assert (40, "Broken: [ERR_VALIDATION] colour: Unknown condition.") in shown


def test_jobs_are_listed_read_only_for_the_back_office(admin_client, tenants_with_rows):
    from aftersales.models import Job

    response = admin_client.get("/admin/aftersales/job/")
    assert response.status_code == 200
    assert Job.objects.unscoped().count() == 2 and response.content.count(b"CSV export") >= 2
    job = Job.objects.unscoped().first()
    page = admin_client.get(f"/admin/aftersales/job/{job.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.get("/admin/aftersales/job/add/").status_code == 403
