"""Batch review (批量审核) in the portal: select requests on the queue (across stores), act once, read each result.

Two steps, both on ``portal:batch``:

* ``GET`` — the queue's selection (``ids``, or ``scope=matching`` with the queue's filters) and the action: a
  confirmation page that names the selected requests by return id and store, asks for what the action needs
  (the approval decision, a reject reason from the selected requests' own reason lists, a message to the buyer,
  a comment), and marks the requests whose store the person may not handle (they will fail with that code);
* ``POST`` — once per form key (``portal.request.run_once``): up to ``SYNC_MAX`` ids run right away through
  ``aftersales.services.bulk`` (each id its own result) and the per-item result list follows
  (POST/redirect/GET, the results kept in the session under the form's key); more go to
  ``aftersales.jobs.start_bulk`` and the job's page shows the progress bar.

Nothing is decided here: visibility is the scoping gate (an id the user cannot see fails as not found in the
service), permissions and states are the services' checks, the codes come from ``stores.errors``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import replace

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from aftersales import jobs, services
from aftersales.api.selectors import default_approval
from aftersales.models import AfterSalesRequest
from aftersales.states import Decision
from portal import batch_jobs, batch_scope
from portal.batch_items import bulk_outcome, item_error
from portal.request import ACTION_LABELS, KEY_FIELD, ShownError, done_message, new_key, run_once, valid_uuids
from portal.views import no_agency, stores_in_view
from stores import errors
from stores.errors import AppError
from stores.permissions import PERM_ERROR_CODES, StorePerm
from stores.services import actor_for_user, store_perms

SYNC_MAX = 50  # a batch of up to this many requests acts at once; a larger one runs as a background job
LISTED = 50  # selected requests named on the confirmation page (the rest are counted)
SESSION_RESULTS = "portal.batch.results"
KEPT_RESULTS = 5  # recent batch results kept in the session (a result page is read right after its POST)
ACTIONS = ("approve", "reject", "request_evidence", "close")
# Approvals a batch can carry: one decision for every request. A partial-refund offer needs an amount per
# request (and its currency), so it is made on the request's own page.
APPROVALS = [d for d in Decision if d not in services.REJECT_DECISIONS and d != Decision.OFFER_PARTIAL_REFUND]
NO_SELECTION = gettext_lazy("Select at least one request on the queue.")
CHANGED = gettext_lazy("The requests matching the filters changed since you confirmed: review them again.")
CONFIRMED_COUNT = "confirmed_count"  # "every request matching the filters": how many the confirmation page showed
CONFIRMED = "confirmed"  # ... and their fingerprint (portal.batch_scope.fingerprint)


def _back(request, value: str) -> str:
    """Where "back to the queue" goes: the queue page the selection came from (same host only)."""
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()},
                                                 require_https=request.is_secure()):
        return value
    return reverse("portal:queue")


class Selection:
    """What the person picked: the action, the ids (or "every request matching these filters") and the scope."""

    def __init__(self, request, actor, data):
        self.actor = actor
        self.action = str(data.get("action", "") or "").strip().replace("-", "_")
        self.matching = data.get("scope") == "matching"
        self.filters = str(data.get("filters", "") or "")
        self.back = _back(request, str(data.get("back", "") or ""))
        _stores, self.current, self.scope = stores_in_view(request, actor)
        self.form = batch_scope.queue_filters(self.filters, self.scope) if self.matching else None
        self.ids = [] if self.matching else list(dict.fromkeys(
            str(i).strip() for i in data.getlist("ids") if str(i).strip()))

    def resolve(self) -> list[str]:
        """The ids to act on; raises the coded refusal when there is nothing to act on or too much."""
        if self.action not in ACTIONS:
            raise AppError(errors.ERR_BULK_002)
        limit = jobs.bulk_job_max_ids()
        if self.matching:
            self.ids = batch_scope.matching_ids(self.actor, batch_scope.filter_query(self.form, self.current), limit)
        if not self.ids:
            raise AppError(errors.ERR_VALIDATION, fields={"ids": [str(NO_SELECTION)]})
        if len(self.ids) > limit:
            raise batch_scope.too_many(limit)
        return self.ids

    def check_confirmed(self, data) -> None:
        """For "every request matching the filters": the POST re-ran the filters; act only if they still select
        exactly the requests the confirmation page showed (requests that arrived since were never shown)."""
        if not self.matching:
            return
        if (str(data.get(CONFIRMED_COUNT, "")) != str(len(self.ids))
                or str(data.get(CONFIRMED, "")) != batch_scope.fingerprint(self.ids)):
            raise AppError(errors.ERR_VALIDATION, fields={"ids": [str(CHANGED)]})


def _params(action: str, data) -> dict:
    """What the action needs, from the confirmation form; a missing decision or reason is ERR_VALIDATION."""
    text = {name: str(data.get(name, "") or "").strip() for name in ("decision", "reason", "comment", "message")}
    if action == "approve":
        if text["decision"] not in {d.value for d in APPROVALS}:
            raise AppError(errors.ERR_VALIDATION, fields={"decision": [_("Choose how to approve.")]})
        return {"decision": text["decision"]}
    if action == "reject":
        if not text["reason"]:
            raise AppError(errors.ERR_VALIDATION, fields={"reason": [_("Choose a reject reason.")]})
        return {"reason": text["reason"][:160], "comment": text["comment"][:services.MAX_COMMENT]}
    if action == "request_evidence":
        return {"message": text["message"][:services.MAX_COMMENT]}
    return {"comment": text["comment"][:services.MAX_COMMENT]}


def _confirm_context(selection: Selection, ids: list[str]) -> dict:
    """The selected requests as the confirmation page lists them, the reasons they offer, who may act on them.

    Constant queries: the visible requests (one), the person's permissions on their stores (one)."""
    tickets = list(AfterSalesRequest.objects.for_actor(selection.actor).filter(public_id__in=valid_uuids(ids))
                   .select_related("store__market")
                   .only("public_id", "return_id", "order_id", "type", "state", "reject_reasons", "due_at",
                         "store__name", "store__public_id", "store__market__code", "store__market__time_zone")
                   .order_by("due_at", "pk"))
    perms = store_perms(selection.actor, {t.store_id for t in tickets})
    refused = item_error(errors.CATALOGUE[PERM_ERROR_CODES[StorePerm.HANDLE_AFTERSALES]].code)
    for ticket in tickets:
        ticket.refused = None if StorePerm.HANDLE_AFTERSALES.value in perms.get(ticket.store_id, set()) else refused
    reasons: dict[str, dict] = {}
    for ticket in tickets:
        for reason in services.reject_reasons(ticket):
            if isinstance(reason, dict) and reason.get("name"):
                entry = reasons.setdefault(reason["name"], {"name": reason["name"], "text": reason.get("text") or
                                                            reason["name"], "count": 0})
                entry["count"] += 1
    defaults = Counter(default_approval(t) for t in tickets)
    return {
        "tickets": tickets[:LISTED],
        "more": max(0, len(tickets) - LISTED),
        "visible": len(tickets),
        "unknown": len(ids) - len(tickets),
        "actionable": sum(1 for t in tickets if t.refused is None),
        "refused_count": sum(1 for t in tickets if t.refused is not None),
        "refused_code": refused.code,
        "reasons": sorted(reasons.values(), key=lambda r: -r["count"]),
        "approvals": [(d.value, d.label) for d in APPROVALS],
        "default_decision": defaults.most_common(1)[0][0] if defaults else Decision.APPROVE_REFUND.value,
        "stores": len({t.store_id for t in tickets}),
    }


def _render_confirm(request, selection: Selection, ids: list[str], *, error: ShownError | None = None,
                    values: dict | None = None, status: int = 200):
    context = {
        "selection": selection,
        "action_label": ACTION_LABELS[selection.action],
        "ids": [] if selection.matching else ids,
        "count": len(ids),
        "confirmed_count_field": CONFIRMED_COUNT,
        "confirmed_field": CONFIRMED,
        "fingerprint": batch_scope.fingerprint(ids) if selection.matching else "",
        "runs_as_job": len(ids) > SYNC_MAX,
        "sync_max": SYNC_MAX,
        "filters_shown": batch_scope.described(selection.form) if selection.form is not None else [],
        "key": new_key(),
        "key_field": KEY_FIELD,
        "error": error,
        "values": values or {},
        **_confirm_context(selection, ids),
    }
    return render(request, "portal/batch_confirm.html", context, status=status)


def _render_refused(request, selection: Selection | None, error: AppError):
    """The selection itself is refused (nothing selected, unknown action, too many): say why, link back."""
    back = selection.back if selection is not None else reverse("portal:queue")
    return render(request, "portal/batch_refused.html", {"error": ShownError.of(error), "back": back},
                  status=error.status)


def _keep_results(request, key: str, data: dict) -> None:
    kept = dict(request.session.get(SESSION_RESULTS) or {})
    kept[key] = data
    request.session[SESSION_RESULTS] = dict(list(kept.items())[-KEPT_RESULTS:])


@login_required
@require_http_methods(["GET", "POST"])
def batch(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    data = request.POST if request.method == "POST" else request.GET
    selection = Selection(request, actor, data)
    try:
        ids = selection.resolve()
    except AppError as exc:
        return _render_refused(request, selection, exc)
    if request.method == "GET":
        return _render_confirm(request, selection, ids)

    values = {k: str(v) for k, v in request.POST.items() if k in ("decision", "reason", "comment", "message")}
    try:
        selection.check_confirmed(request.POST)
        params = _params(selection.action, request.POST)
    except AppError as exc:
        error = ShownError.of(exc)
        return _render_confirm(request, selection, ids, error=error, values=values, status=error.status)

    def act() -> str:
        if len(ids) <= SYNC_MAX:
            return json.dumps({"results": services.bulk(batch_jobs.performer(actor), selection.action, ids, params)})
        return json.dumps({"job": str(jobs.start_bulk(actor, selection.action, ids, params).public_id)})

    outcome = run_once(request, act)
    if not outcome.ok:
        error = ShownError.of(outcome.error)
        return _render_confirm(request, selection, ids, error=error, values=values, status=error.status)
    if outcome.replayed:
        messages.info(request, done_message(replace(outcome, message=_("Its results are below."))))
    done = json.loads(outcome.message)
    if "job" in done:
        return redirect("portal:job", job_id=done["job"])
    key = str(uuid.UUID(str(request.POST[KEY_FIELD])))
    _keep_results(request, key, {"action": selection.action, "results": done["results"], "back": selection.back})
    return redirect("portal:batch_result", key=key)


@login_required
def batch_result(request, key):
    """The per-item results of a batch that ran at once (kept in this session under the form's key)."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    kept = (request.session.get(SESSION_RESULTS) or {}).get(str(key))
    if kept is None:
        return _render_refused(request, None, AppError(errors.ERR_NOT_FOUND))
    outcome = bulk_outcome(actor, kept["results"])
    return render(request, "portal/batch_result.html", {
        "action_label": ACTION_LABELS.get(kept["action"], kept["action"]),
        "outcome": outcome,
        "back": _back(request, kept.get("back", "")),
    })


urlpatterns: list = [
    path("batch/", batch, name="batch"),
    path("batch/results/<uuid:key>/", batch_result, name="batch_result"),
    *batch_jobs.urlpatterns,
]
