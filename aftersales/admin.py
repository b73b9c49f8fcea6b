"""Back-office admin for the after-sales core.

Admin users are back-office staff, not tenant members: they see every agency, and every change to a
request goes through ``aftersales.services`` (the same path as the portal, the API and the platform sync),
performed as ``Performer(kind=SYSTEM, label="admin:<username>")``. Nothing here edits a request's state,
amounts or platform fields directly, and the operation log is view-only (the database refuses UPDATE and
DELETE on it anyway).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from aftersales import rules, selectors, services
from aftersales.models import (
    ActorKind,
    AfterSalesRequest,
    AutoRule,
    Compensation,
    Evidence,
    Job,
    LineItem,
    OperationLog,
    QuickReply,
    SensitiveWord,
    ServiceScoreEntry,
    SlaBreach,
)
from aftersales.oplog import Performer
from aftersales.states import OPEN_STATES, Decision, RequestType, State
from stores.errors import CATALOGUE, AppError

# The platform decision the "Approve" action takes for each request type (a parcel already on its way
# back is approved on receipt instead: see approve_decision).
APPROVE_DECISION = {
    RequestType.REFUND_ONLY: Decision.APPROVE_REFUND,
    RequestType.RETURN_AND_REFUND: Decision.APPROVE_RETURN,
    RequestType.EXCHANGE: Decision.APPROVE_REPLACEMENT,
    RequestType.CANCELLATION: Decision.APPROVE_REQUEST_CANCEL,
}

# How many return ids an action message lists before it says "and N more".
MESSAGE_ITEMS = 20

STATE_LABELS = dict(State.choices)


def approve_decision(ticket: AfterSalesRequest) -> str:
    if ticket.type == RequestType.RETURN_AND_REFUND and ticket.state == State.RETURN_IN_TRANSIT:
        return Decision.APPROVE_RECEIVED_PACKAGE
    return APPROVE_DECISION[ticket.type]


# --- helpers --------------------------------------------------------------------------------------
def pretty_json(value) -> str:
    if value in (None, "", {}, []):
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    # <code> (not <pre>): the admin wraps read-only values in <p>, which may not contain a <pre>.
    return format_html('<code style="display: block; white-space: pre-wrap; max-width: 48em;">{}</code>', text)


def error_html(code: str) -> str:
    """An error code with its catalogue message and fix-it hint."""
    if not code:
        return "—"
    entry = CATALOGUE.get(code)
    if entry is None:
        return format_html("<strong>{}</strong>", code)
    return format_html('<strong>{}</strong><br>{}<br><span class="help">{}</span>',
                       code, entry.message, entry.hint)


def state_change(before: str, after: str) -> str:
    if not before and not after:
        return "—"
    if before == after:
        return str(STATE_LABELS.get(after, after))
    return f"{STATE_LABELS.get(before, before or '∅')} → {STATE_LABELS.get(after, after)}"


def evidence_preview(evidence: Evidence) -> str:
    """A thumbnail linking to the stored image, or a link to a video's URL."""
    if evidence.file:
        if evidence.kind == Evidence.Kind.IMAGE:
            return format_html('<a href="{0}" target="_blank" rel="noopener">'
                               '<img src="{0}" alt="" style="max-height: 80px; max-width: 120px;"></a>',
                               reverse("portal:evidence_file", args=[evidence.public_id]))
        return format_html('<a href="{0}" target="_blank" rel="noopener">{1}</a>',
                           reverse("portal:evidence_file", args=[evidence.public_id]), _("file"))
    if evidence.url:
        return format_html('<a href="{0}" target="_blank" rel="noopener noreferrer">{1}</a>', evidence.url,
                           _("video") if evidence.kind == Evidence.Kind.VIDEO else _("link"))
    return "—"


class ReadOnlyMixin:
    """Nothing is added, changed or deleted here; viewing is governed by the model's view permission."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- filters --------------------------------------------------------------------------------------
class ErrorCodeFilter(admin.SimpleListFilter):
    """Error codes that actually occur in the operation log (one DISTINCT query on the indexed column)."""

    title = _("error code")
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = (OperationLog.objects.exclude(error_code="").order_by("error_code")
                 .values_list("error_code", flat=True).distinct())
        result = []
        for code in codes:
            entry = CATALOGUE.get(code)
            result.append((code, f"{code} · {entry.message}" if entry else code))
        return result

    # On the request list a code matches requests with such a log row (EXISTS, no join fan-out); on the
    # log list it matches the rows themselves.
    on_requests = True

    def queryset(self, request, queryset):
        code = self.value()
        if not code:
            return queryset
        if self.on_requests:
            return queryset.filter(Exists(OperationLog.objects.filter(ticket_id=OuterRef("pk"), error_code=code)))
        return queryset.filter(error_code=code)


class RequestErrorCodeFilter(ErrorCodeFilter):
    """Requests having at least one operation-log row with the code."""


class LogErrorCodeFilter(ErrorCodeFilter):
    on_requests = False


class FlagFilter(admin.SimpleListFilter):
    """Yes/no filters on the queue flags (stalled, breached)."""

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() not in {"yes", "no"}:
            return queryset
        condition = self.condition()
        return queryset.filter(condition) if self.value() == "yes" else queryset.exclude(condition)


class StalledFilter(FlagFilter):
    title = _("stalled (物流断链)")
    parameter_name = "stalled"

    def condition(self):
        return Q(stalled_at__isnull=False)


class BreachedFilter(FlagFilter):
    """Open requests past the platform's own deadline (seller_next_action_response)."""

    title = _("past the platform deadline")
    parameter_name = "breached"

    def condition(self):
        return Q(state__in=OPEN_STATES, platform_deadline__lt=timezone.now())


class StoreFilter(admin.RelatedOnlyFieldListFilter):
    """Stores that have requests, fetched with their market in one query (Store.__str__ shows the market)."""

    def field_choices(self, field, request, model_admin):
        store_ids = model_admin.get_queryset(request).values("store_id")
        stores = (field.related_model._default_manager.filter(pk__in=store_ids)
                  .select_related("market").order_by("name", "pk"))
        return [(store.pk, str(store)) for store in stores]


class LogColumns:
    """Columns that render an operation-log row the same way on the timeline and in the log admin."""

    @admin.display(description=_("state"))
    def states(self, obj: OperationLog) -> str:
        return state_change(obj.state_before, obj.state_after)

    @admin.display(description=_("error code"))
    def error(self, obj: OperationLog) -> str:
        return error_html(obj.error_code)

    @admin.display(description=_("payload"))
    def payload_json(self, obj: OperationLog) -> str:
        return pretty_json(obj.payload)


# --- inlines on the request page ------------------------------------------------------------------
class OperationLogTimeline(LogColumns, ReadOnlyMixin, admin.TabularInline):
    """操作日志: the request's timeline, oldest first. One query for any number of rows."""

    model = OperationLog
    fk_name = "ticket"
    extra = 0
    can_delete = False
    ordering = ("id",)  # insertion order, served by the (ticket, id) index
    verbose_name = _("operation-log entry")
    verbose_name_plural = _("timeline (operation log)")
    fields = readonly_fields = ("time", "actor_kind", "actor_label", "action", "states", "error", "message",
                                "request_id", "payload_json")

    @admin.display(description=_("time"))
    def time(self, obj: OperationLog) -> str:
        return date_format(localtime(obj.created_at), "Y-m-d H:i:s")



class LineItemInline(ReadOnlyMixin, admin.TabularInline):
    model = LineItem
    extra = 0
    can_delete = False
    fields = readonly_fields = ("product_name", "sku_name", "sku_id", "seller_sku", "category", "quantity",
                                "refund_amount", "line_item_id", "order_line_item_id")


class EvidenceInline(ReadOnlyMixin, admin.TabularInline):
    model = Evidence
    fk_name = "ticket"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "role", "kind", "preview", "content_type", "size", "note",
                                "uploaded_by")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("uploaded_by")

    @admin.display(description=_("file or link"))
    def preview(self, obj: Evidence) -> str:
        return evidence_preview(obj)


# --- requests -------------------------------------------------------------------------------------
@admin.register(AfterSalesRequest)
class AfterSalesRequestAdmin(admin.ModelAdmin):
    list_display = ["return_id", "order_id", "store", "market", "type", "state", "platform_status_flag",
                    "refund", "platform_deadline", "updated_at"]
    list_display_links = ["return_id"]
    list_select_related = ["store__market"]
    list_filter = [
        ("store__market", admin.RelatedFieldListFilter),
        ("store", StoreFilter),
        "type",
        "state",
        RequestErrorCodeFilter,
        StalledFilter,
        BreachedFilter,
        "platform_status_unknown",
    ]
    # return_shipment is logistics' reverse relation: a string lookup, so aftersales imports nothing of it.
    search_fields = ["order_id", "return_id", "buyer_user_id", "replacement_tracking_number",
                     "return_shipment__tracking_number"]
    ordering = ["-updated_at", "-id"]
    inlines = [LineItemInline, EvidenceInline, OperationLogTimeline]
    actions = ["approve_by_type", "request_more_evidence", "close_requests"]

    fieldsets = [
        (None, {"fields": ["public_id", "agency", "store", "type", "state", "state_changed_at",
                           "pre_arbitration_state"]}),
        (_("Platform"), {"fields": ["return_id", "order_id", "platform_status_flag", "platform_return_type",
                                    "arbitration_status", "initiator_role", "platform_deadline",
                                    "seller_next_actions_json", "platform_created_at", "platform_updated_at"]}),
        (_("Buyer"), {"fields": ["buyer_user_id", "buyer_name", "reason_key", "reason_text"]}),
        (_("Amounts"), {"fields": ["currency", "refund_total", "refund_subtotal", "refund_shipping_fee",
                                   "refund_tax", "refunded_amount", "partial_refund_offer", "refundable",
                                   "fees_summary"]}),
        (_("Shipping"), {"fields": ["shipment_type", "handover_method", "return_method", "can_buyer_keep_item",
                                    "is_quick_refund", "replacement_tracking_number", "reject_reasons_json"]}),
        (_("Platform payload"), {"classes": ["collapse"], "fields": ["raw_json"]}),
        (_("Record"), {"fields": ["created_at", "updated_at"]}),
    ]
    # Everything is read-only: state and amounts change only through the services (the actions).
    readonly_fields = [f for _name, opts in fieldsets for f in opts["fields"]]

    def get_queryset(self, request):
        # The back office works across tenants, and says so by name.
        return super().get_queryset(request).unscoped().select_related("agency", "store__market")

    def has_add_permission(self, request):
        return False  # requests come from the platform (intake), never from the admin

    def has_change_permission(self, request, obj=None):
        # The list and its actions need "change"; a single request's page is view-only, so no form can
        # write a request around the services.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    # --- columns ---
    @admin.display(description=_("market"), ordering="store__market__code")
    def market(self, obj: AfterSalesRequest) -> str:
        return obj.store.market.code

    @admin.display(description=_("platform status"), ordering="platform_status")
    def platform_status_flag(self, obj: AfterSalesRequest) -> str:
        if obj.platform_status_unknown:
            return format_html('<strong style="color: #ba2121;" title="{}">⚠ {} ({})</strong>',
                               CATALOGUE["ERR_SYNC_001"].message, obj.platform_status or "—", _("unknown"))
        return obj.platform_status or "—"

    @admin.display(description=_("refund total"), ordering="refund_total")
    def refund(self, obj: AfterSalesRequest) -> str:
        return f"{obj.refund_total} {obj.currency}"

    @admin.display(description=_("refundable"))
    def refundable(self, obj: AfterSalesRequest) -> str:
        return f"{obj.refundable} {obj.currency}"

    @admin.display(description=_("fees"))
    def fees_summary(self, obj: AfterSalesRequest) -> str:
        fees = selectors.fees(obj)
        estimate = _(" (estimate, before refund)") if fees["commission_is_estimate"] else ""
        return _("Commission returned: %(amount)s %(currency)s at %(rate)s%%%(estimate)s · Return shipping: "
                 "%(payer)s") % {"amount": fees["commission_returned"], "currency": fees["currency"],
                                 "rate": (fees["commission_rate"] * 100).normalize(), "estimate": estimate,
                                 "payer": fees["return_shipping_payer_label"] or "—"}

    @admin.display(description=_("seller next actions"))
    def seller_next_actions_json(self, obj: AfterSalesRequest) -> str:
        return pretty_json(obj.seller_next_actions)

    @admin.display(description=_("reject reasons"))
    def reject_reasons_json(self, obj: AfterSalesRequest) -> str:
        return pretty_json(obj.reject_reasons)

    @admin.display(description=_("platform payload"))
    def raw_json(self, obj: AfterSalesRequest) -> str:
        return pretty_json(obj.raw)

    # --- actions: the same services as the portal and the API, one transaction per request ---
    def _performer(self, request) -> Performer:
        return Performer(kind=ActorKind.SYSTEM, label=f"admin:{request.user.get_username()}",
                         user_id=request.user.pk, actor=None)

    def _run(self, request, queryset, call, done_message) -> None:
        performer = self._performer(request)
        done: list[str] = []
        failed: dict[tuple[str, str], list[str]] = {}
        for ticket in queryset.select_related(None).only("pk", "return_id", "type").order_by("pk"):
            try:
                call(performer, ticket)
            except AppError as exc:
                key = (exc.code, exc.detail or str(exc.error.message))
                failed.setdefault(key, []).append(ticket.return_id)
            else:
                done.append(ticket.return_id)
        for (code, message), return_ids in failed.items():
            self.message_user(request, _("[%(code)s] %(message)s Requests: %(items)s") % {
                "code": code, "message": message, "items": _listing(return_ids)}, messages.ERROR)
        if done:
            self.message_user(request, done_message % {"count": len(done), "items": _listing(done)},
                              messages.SUCCESS)

    @admin.action(description=_("Approve (platform decision by type)"), permissions=["change"])
    def approve_by_type(self, request, queryset):
        def call(performer, ticket):
            services.approve(performer, ticket.pk, approve_decision(ticket))

        self._run(request, queryset, call, ngettext_lazy(
            "%(count)d request approved: %(items)s", "%(count)d requests approved: %(items)s", "count"))

    @admin.action(description=_("Request more evidence"), permissions=["change"])
    def request_more_evidence(self, request, queryset):
        def call(performer, ticket):
            services.request_evidence(performer, ticket.pk)

        self._run(request, queryset, call, ngettext_lazy(
            "Evidence requested on %(count)d request: %(items)s",
            "Evidence requested on %(count)d requests: %(items)s", "count"))

    @admin.action(description=_("Close"), permissions=["change"])
    def close_requests(self, request, queryset):
        def call(performer, ticket):
            services.close(performer, ticket.pk)

        self._run(request, queryset, call, ngettext_lazy(
            "%(count)d request closed: %(items)s", "%(count)d requests closed: %(items)s", "count"))


def _listing(return_ids: list[str]) -> str:
    shown = ", ".join(return_ids[:MESSAGE_ITEMS])
    rest = len(return_ids) - MESSAGE_ITEMS
    if rest > 0:
        return str(_("%(shown)s and %(rest)d more") % {"shown": shown, "rest": rest})
    return shown


# --- operation log ------------------------------------------------------------------------------
@admin.register(OperationLog)
class OperationLogAdmin(LogColumns, ReadOnlyMixin, admin.ModelAdmin):
    """操作日志: append-only. View only; the database refuses UPDATE and DELETE as well."""

    list_display = ["created_at", "request_link", "order_id", "actor_kind", "actor_label", "action", "states",
                    "error_code", "request_id"]
    list_select_related = ["ticket"]
    list_filter = [LogErrorCodeFilter, "action", "actor_kind"]
    date_hierarchy = "created_at"
    search_fields = ["order_id", "request_id"]
    ordering = ["-id"]
    actions = None
    fields = readonly_fields = ["created_at", "request_link", "order_id", "agency_id", "store_id", "actor_kind",
                                "actor_user", "actor_label", "action", "states", "error", "message",
                                "request_id", "payload_json"]

    @admin.display(description=_("request"), ordering="ticket_id")
    def request_link(self, obj: OperationLog) -> str:
        url = reverse("admin:aftersales_aftersalesrequest_change", args=[obj.ticket_id])
        return format_html('<a href="{}">{}</a>', url, obj.ticket.return_id)



# --- evidence -----------------------------------------------------------------------------------
@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Evidence is uploaded in the portal (validated there); the back office only looks."""

    list_display = ["created_at", "request_link", "role", "kind", "preview", "content_type", "size"]
    list_select_related = ["ticket"]
    list_filter = ["role", "kind"]
    search_fields = ["ticket__return_id", "ticket__order_id", "sha256"]
    ordering = ["-id"]
    actions = None
    fields = readonly_fields = ["public_id", "request_link", "role", "kind", "preview", "content_type", "width",
                                "height", "size", "sha256", "note", "uploaded_by", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    @admin.display(description=_("request"), ordering="ticket_id")
    def request_link(self, obj: Evidence) -> str:
        url = reverse("admin:aftersales_aftersalesrequest_change", args=[obj.ticket_id])
        return format_html('<a href="{}">{}</a>', url, obj.ticket.return_id)

    @admin.display(description=_("file or link"))
    def preview(self, obj: Evidence) -> str:
        return evidence_preview(obj)


# --- quick replies ------------------------------------------------------------------------------
@admin.register(QuickReply)
class QuickReplyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """售后话术库. Read-only: replies are written only through ``aftersales.replies`` (template and
    sensitive-word checks), whose create/update/delete take a tenant member's Actor and have no path for
    back-office staff yet. Until they do, the admin looks and does not write around them."""

    list_display = ["title", "agency", "store", "position", "updated_at"]
    list_select_related = ["agency", "store__market"]
    list_filter = ["agency"]
    search_fields = ["title", "body"]
    ordering = ["agency", "position", "id"]
    actions = None
    fields = readonly_fields = ["public_id", "agency", "store", "title", "body", "position", "created_at",
                                "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()


# --- sensitive words: policy data, edited by admins ------------------------------------------------
@admin.register(SensitiveWord)
class SensitiveWordAdmin(admin.ModelAdmin):
    list_display = ["value", "kind", "market", "label", "is_active"]
    list_editable = ["is_active"]
    list_select_related = ["market"]
    list_filter = ["kind", "is_active", "market"]
    search_fields = ["value", "label"]
    fields = ["market", "kind", "value", "label", "is_active"]


# --- SLA records: what happened when a deadline was missed (read-only) -------------------------------
class SlaRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()  # back office: every tenant, by name


@admin.register(SlaBreach)
class SlaBreachAdmin(SlaRecordAdmin):
    list_display = ["created_at", "ticket", "store", "kind", "due_at"]
    list_filter = ["kind", "store__market"]
    search_fields = ["ticket__order_id", "ticket__return_id"]
    list_select_related = ["ticket", "store__market"]


@admin.register(Compensation)
class CompensationAdmin(SlaRecordAdmin):
    list_display = ["created_at", "ticket", "store", "amount", "currency", "status", "error_code"]
    list_filter = ["status", "currency"]
    search_fields = ["ticket__order_id", "ticket__return_id"]
    list_select_related = ["ticket", "store__market"]


@admin.register(ServiceScoreEntry)
class ServiceScoreEntryAdmin(SlaRecordAdmin):
    list_display = ["created_at", "store", "delta", "score_after", "breach"]
    list_filter = ["store__market"]
    list_select_related = ["store__market", "breach"]


@admin.register(Job)
class JobAdmin(SlaRecordAdmin):
    """Background jobs of every agency (exports, imports, batch actions): status, progress, error code."""

    list_display = ["created_at", "agency", "kind", "status", "done", "total", "error_code", "created_by",
                    "finished_at"]
    list_filter = ["kind", "status", "agency"]
    search_fields = ["public_id", "created_by__username"]
    list_select_related = ["agency", "created_by"]


# --- auto-rules: validated by aftersales.rules, dry run by its preview --------------------------------
def coded_errors(exc: AppError) -> list[ValidationError]:
    """A service's coded refusal as form errors: one message per key it names, each with the code."""
    if not exc.fields:
        return [ValidationError(_("[%(code)s] %(message)s"), code=exc.code,
                                params={"code": exc.code, "message": exc.detail or exc.error.message})]
    return [ValidationError(_("[%(code)s] %(key)s: %(message)s"), code=exc.code,
                            params={"code": exc.code, "key": key, "message": message})
            for key, found in exc.fields.items() for message in found]


class AutoRuleForm(forms.ModelForm):
    """Conditions and parameters are checked by the same functions as ``rules.create_rule``."""

    class Meta:
        model = AutoRule
        fields = ["agency", "store", "name", "position", "is_active", "action", "conditions", "params"]
        help_texts = {
            "store": _("Empty: the rule applies to every store of the agency, after the store's own rules."),
            "conditions": _('All must hold; {} matches every request. E.g. {"type_in": ["refund_only"], '
                            '"refund_total_lte": {"amount": "30", "currency": "USD"}, '
                            '"buyer_flags": ["serial_returner"]} (or "buyer_not_flags").'),
            "params": _('approve: {}; reply: {"reply_id": "<quick reply id>"}; assign: {"user_ids": [<user id>, '
                        '…]} (round-robin; one id assigns that person); tag: {"tags": ["…"]}; escalate: '
                        '{"note": "…"}.'),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        params = self.instance.params or {}
        if rules.CURSOR in params:  # the round-robin state is the rule's own, not a parameter to edit
            self.initial["params"] = {k: v for k, v in params.items() if k != rules.CURSOR}

    def clean(self):
        data = super().clean()
        agency, store = data.get("agency"), data.get("store")
        if agency is not None and store is not None and store.agency_id != agency.pk:
            self.add_error("store", ValidationError(_("This store belongs to another agency."), code="invalid"))
        if "conditions" in data:
            try:
                data["conditions"] = rules.clean_conditions({} if data["conditions"] is None else data["conditions"])
            except AppError as exc:
                self.add_error("conditions", coded_errors(exc))
        if agency is not None and data.get("action") and "params" in data and not self.has_error("store"):
            try:
                data["params"] = rules.clean_params(data["action"], data["params"], agency_id=agency.pk, store=store)
            except AppError as exc:
                self.add_error("params", coded_errors(exc))
        return data


class RuleScopeFilter(admin.SimpleListFilter):
    title = _("scope")
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("agency", _("Agency-wide")), ("store", _("One store"))]

    def queryset(self, request, queryset):
        if self.value() in {"agency", "store"}:
            return queryset.filter(store__isnull=self.value() == "agency")
        return queryset


@admin.register(AutoRule)
class AutoRuleAdmin(admin.ModelAdmin):
    """自动规则 across every agency. Saved rules run as the "rule" actor through the services; the dry run
    counts the requests of the last 30 days the saved conditions match (``rules.preview_saved_rule``)."""

    form = AutoRuleForm
    list_display = ["agency", "store", "position", "is_active", "action", "name", "conditions_summary"]
    list_display_links = ["name"]
    list_select_related = ["agency", "store__market"]
    list_filter = ["action", "is_active", RuleScopeFilter, ("agency", admin.RelatedOnlyFieldListFilter),
                   ("store", StoreFilter)]
    search_fields = ["name", "agency__name", "store__name"]
    ordering = ["agency__name", "store__name", "position", "id"]
    autocomplete_fields = ["agency", "store"]
    actions = ["dry_run_selected"]
    readonly_fields = ["dry_run", "round_robin_state", "public_id", "created_at"]
    fieldsets = [
        (None, {"fields": ["agency", "store", "name", "position", "is_active", "action"]}),
        (_("Conditions and parameters"), {"fields": ["conditions", "params", "round_robin_state"]}),
        (_("Dry run"), {"fields": ["dry_run"]}),
        (_("Record"), {"fields": ["public_id", "created_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()  # back office: every tenant, by name

    def save_model(self, request, obj, form, change):
        """Keep the round-robin position when neither the action nor the parameters changed (as
        ``rules.update_rule`` restarts it when they do); read under the row lock the assignment takes."""
        with transaction.atomic():
            if change:
                current = self.get_queryset(request).select_for_update().get(pk=obj.pk)
                kept = {k: v for k, v in current.params.items() if k != rules.CURSOR}
                if rules.CURSOR in current.params and current.action == obj.action and kept == obj.params:
                    obj.params = {**obj.params, rules.CURSOR: current.params[rules.CURSOR]}
            super().save_model(request, obj, form, change)

    @admin.display(description=_("conditions"))
    def conditions_summary(self, obj: AutoRule) -> str:
        if not obj.conditions:
            return gettext("every request")
        return json.dumps(obj.conditions, ensure_ascii=False, sort_keys=True)

    @admin.display(description=_("round-robin position"))
    def round_robin_state(self, obj: AutoRule) -> str:
        return pretty_json((obj.params or {}).get(rules.CURSOR))

    def _dry_run_text(self, obj: AutoRule) -> tuple[bool, str]:
        try:
            result = rules.preview_saved_rule(obj)
        except AppError as exc:
            return False, "; ".join(str(e.message % e.params) for e in coded_errors(exc))
        count = result["would_match"]
        return True, ngettext("Would have matched %(count)d request in the last %(days)d days.",
                              "Would have matched %(count)d requests in the last %(days)d days.", count) % {
            "count": count, "days": rules.PREVIEW_DAYS}

    @admin.display(description=_("dry run"))
    def dry_run(self, obj: AutoRule) -> str:
        if obj is None or obj.pk is None:
            return gettext("Save the rule to see how many requests it would have matched.")
        return self._dry_run_text(obj)[1]

    @admin.action(description=_("Dry run: count the matches of the last 30 days"), permissions=["view"])
    def dry_run_selected(self, request, queryset):
        for rule in queryset.order_by("agency__name", "position", "id"):
            ok, text = self._dry_run_text(rule)
            self.message_user(request, _("%(name)s: %(result)s") % {"name": rule.name, "result": text},
                              messages.INFO if ok else messages.ERROR)


# The TikTok Shop connector's admin pages (partner apps, authorisations, sync reports, webhooks, outbox).
from aftersales.tiktok import admin as tiktok_admin  # noqa: E402, F401
