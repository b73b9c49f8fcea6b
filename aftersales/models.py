"""After-sales requests (售后单), their line items, the operation log, evidence, quick replies."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from aftersales.states import OPEN_STATES, Arbitration, RequestType, State
from stores.models import Agency, Market, Store
from stores.scoping import TenantManager, TenantScope

MONEY = {"max_digits": 14, "decimal_places": 2}


class SlaKind(models.TextChoices):
    """The deadlines a request can miss (market policy data decides which apply)."""

    FIRST_RESPONSE = "first_response", _("First human response (首次人工处理)")
    AUTO_APPROVE = "auto_approve", _("Platform auto-approval")
    REPLACEMENT_RESPONSE = "replacement_response", _("Replacement response")
    PLATFORM = "platform", _("Platform deadline")


class AfterSalesRequest(models.Model):
    """One buyer request as the platform sent it, plus our normalised state for queues."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No single-column indexes on agency and store: the composite indexes below lead with them (every
    # extra index is one more write on each SLA or state update of a row).
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+", db_index=False)
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="aftersales_requests", db_index=False)
    type = models.CharField(_("type"), max_length=24, choices=RequestType.choices)
    state = models.CharField(_("state"), max_length=24, choices=State.choices, default=State.PENDING_REVIEW)
    state_changed_at = models.DateTimeField(_("state changed at"))
    # Where the request stood when arbitration began: the ruling resolves from it.
    pre_arbitration_state = models.CharField(_("state before arbitration"), max_length=24, choices=State.choices,
                                             blank=True)

    # --- as the platform sends it ---
    return_id = models.CharField(_("return id"), max_length=64)
    order_id = models.CharField(_("order id"), max_length=64)
    platform_status = models.CharField(_("platform status"), max_length=64, blank=True)
    platform_status_unknown = models.BooleanField(_("unknown platform status"), default=False)
    platform_return_type = models.CharField(_("platform return type"), max_length=32, blank=True)
    arbitration_status = models.CharField(_("arbitration"), max_length=16, choices=Arbitration.choices, blank=True)
    initiator_role = models.CharField(_("initiated by"), max_length=16, default="BUYER")
    reason_key = models.CharField(_("reason key"), max_length=160, blank=True)
    reason_text = models.CharField(_("reason"), max_length=500, blank=True)
    buyer_user_id = models.CharField(_("buyer id"), max_length=64)  # looked up per agency: request_buyer_history
    buyer_name = models.CharField(_("buyer"), max_length=200, blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    refund_total = models.DecimalField(_("refund total"), **MONEY, default=Decimal("0"))
    refund_subtotal = models.DecimalField(_("refund subtotal"), **MONEY, default=Decimal("0"))
    refund_shipping_fee = models.DecimalField(_("refund shipping fee"), **MONEY, default=Decimal("0"))
    refund_tax = models.DecimalField(_("refund tax"), **MONEY, default=Decimal("0"))
    refunded_amount = models.DecimalField(_("refunded"), **MONEY, default=Decimal("0"))
    partial_refund_offer = models.DecimalField(_("partial refund offered"), **MONEY, null=True, blank=True)
    seller_next_actions = models.JSONField(_("seller next actions"), default=list, blank=True)
    platform_deadline = models.DateTimeField(_("platform deadline"), null=True, blank=True)
    shipment_type = models.CharField(_("shipment type"), max_length=16, blank=True)
    handover_method = models.CharField(_("handover method"), max_length=16, blank=True)
    return_method = models.CharField(_("return method"), max_length=24, blank=True)
    can_buyer_keep_item = models.BooleanField(_("buyer keeps the item"), default=False)
    is_quick_refund = models.BooleanField(_("quick refund"), default=False)
    reject_reasons = models.JSONField(_("reject reasons"), default=list, blank=True)
    replacement_tracking_number = models.CharField(_("replacement tracking number"), max_length=64, blank=True)
    platform_created_at = models.DateTimeField(_("created on the platform"), null=True, blank=True)
    platform_updated_at = models.DateTimeField(_("updated on the platform"), null=True, blank=True)
    raw = models.JSONField(_("platform payload"), default=dict, blank=True)
    # From the connector's pull: the platform's timeline (Get Return Records) and which decisions it allows now
    # ({decision: {"eligible", "code", "reason"}}; empty = the platform said nothing, the state machine decides).
    platform_records = models.JSONField(_("platform timeline"), default=list, blank=True)
    platform_eligibility = models.JSONField(_("decisions the platform allows"), default=dict, blank=True)
    # The platform update time the timeline, reasons and eligibility above were fetched for: a sync that stopped
    # between the upsert and those calls fetches them again (they differ from platform_updated_at).
    platform_details_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the logistics scan watch through services.mark_stalled; cleared by the first scan.
    stalled_at = models.DateTimeField(_("stalled since"), null=True, blank=True)
    # US no-reason returns: the exempt category found on intake (empty when none applies).
    exempt_category = models.CharField(_("exempt category"), max_length=32, blank=True)
    # Who works on it (a person, or set by an auto-rule's round-robin) and free tags set by rules.
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", verbose_name=_("assigned to"))
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True, verbose_name=_("tags"))
    # --- SLA (aftersales.sla): the earliest deadline still watched, and when the sweep must look next ---
    due_at = models.DateTimeField(_("due by"), null=True, blank=True)
    due_kind = models.CharField(_("deadline"), max_length=24, choices=SlaKind.choices, blank=True)
    # min(next warning, due_at): the one column the sweep probes (NULL = nothing left to watch).
    sla_check_at = models.DateTimeField(_("next SLA check"), null=True, blank=True, editable=False)
    first_human_response_at = models.DateTimeField(_("first human response (首次人工处理)"), null=True, blank=True)
    breached_at = models.DateTimeField(_("deadline missed at"), null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        verbose_name = _("after-sales request")
        verbose_name_plural = _("after-sales requests")
        constraints = [models.UniqueConstraint(fields=["store", "return_id"], name="request_unique_return")]
        indexes = [
            models.Index(fields=["agency", "state", "store"], name="request_agency_state"),
            models.Index(fields=["agency", "buyer_user_id", "created_at"], name="request_buyer_history"),
            # Plain btree (no varchar_pattern_ops twin): order ids are matched exactly.
            models.Index(fields=["order_id"], name="request_order"),
            # Only watched requests (open, a deadline left) are in these: an idle sweep is one small probe.
            # The queue's default order, soonest deadline first, per agency: a page is a range scan from the
            # cursor's (due_at, id), at any depth (aftersales/api/pagination.py). Requests without a deadline
            # come after these in id order (the primary key).
            models.Index(fields=["agency", "due_at", "id"], name="request_queue_due",
                         condition=models.Q(due_at__isnull=False)),
            # ... and the open ones without a deadline, which the open queue shows after them: without this the
            # queue's last page would sift every open request of the agency for the few that have none.
            models.Index(fields=["agency", "id"], name="request_queue_undated",
                         condition=models.Q(due_at__isnull=True, state__in=sorted(OPEN_STATES))),
            models.Index(fields=["sla_check_at"], name="request_sla_check",
                         condition=models.Q(sla_check_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.return_id} ({self.get_type_display()}, {self.get_state_display()})"

    @property
    def refundable(self) -> Decimal:
        return max(Decimal("0"), self.refund_total - self.refunded_amount)


class LineItem(models.Model):
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.CASCADE, related_name="items")
    line_item_id = models.CharField(_("line item id"), max_length=64, blank=True)
    order_line_item_id = models.CharField(_("order line item id"), max_length=64, blank=True)
    sku_id = models.CharField(_("SKU"), max_length=64)
    seller_sku = models.CharField(_("seller SKU"), max_length=64, blank=True)
    sku_name = models.CharField(_("SKU name"), max_length=200, blank=True)
    product_name = models.CharField(_("product"), max_length=300)
    category = models.CharField(_("category"), max_length=64, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    refund_amount = models.DecimalField(_("refund amount"), **MONEY, default=Decimal("0"))

    class Meta:
        ordering = ["id"]
        verbose_name = _("line item")
        verbose_name_plural = _("line items")

    def __str__(self) -> str:
        return f"{self.product_name} × {self.quantity}"


class ActorKind(models.TextChoices):
    BUYER = "buyer", _("Buyer")
    OWNER = "owner", _("Owner")
    SUB_ACCOUNT = "sub_account", _("Sub-account")
    PLATFORM = "platform", _("Platform")
    SYSTEM = "system", _("System")
    RULE = "rule", _("Auto-rule")


class OperationLog(models.Model):
    """操作日志: append-only. Written only by aftersales.oplog; the database refuses UPDATE/DELETE."""

    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.PROTECT, related_name="logs",
                               db_index=False)  # oplog_ticket_timeline leads with it
    agency_id = models.BigIntegerField(db_index=True)
    store_id = models.BigIntegerField()
    order_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(_("time"))
    actor_kind = models.CharField(_("actor kind"), max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_constraint=False)
    actor_label = models.CharField(_("actor"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=48)
    state_before = models.CharField(_("state before"), max_length=24, blank=True)
    state_after = models.CharField(_("state after"), max_length=24, blank=True)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    message = models.TextField(_("message"), blank=True)
    payload = models.JSONField(_("details"), default=dict, blank=True)
    request_id = models.CharField(_("request id"), max_length=80, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("operation log entry")
        verbose_name_plural = _("operation log")
        indexes = [models.Index(fields=["ticket", "id"], name="oplog_ticket_timeline"),
                   models.Index(fields=["error_code"], name="oplog_error_code")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.error_code}".strip()

    @property
    def ok(self) -> bool:
        return not self.error_code


class Evidence(models.Model):
    """上传凭证 / buyer evidence: images (validated, stored) and video links."""

    class Role(models.TextChoices):
        BUYER = "buyer", _("Buyer")
        SELLER = "seller", _("Seller")
        PLATFORM = "platform", _("Platform")

    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        VIDEO = "video", _("Video")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.PROTECT, related_name="evidence")
    role = models.CharField(max_length=16, choices=Role.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.IMAGE)
    file = models.FileField(upload_to="evidence/%Y/%m/", blank=True)
    url = models.URLField(_("video link"), max_length=1000, blank=True)
    cover_url = models.URLField(_("video cover"), max_length=1000, blank=True)
    duration_millis = models.PositiveIntegerField(_("video length (ms)"), null=True, blank=True)
    content_type = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=500, blank=True)
    # Evidence pulled from the platform: a stable key per record item, so a re-sync never adds it twice.
    platform_ref = models.CharField(max_length=64, blank=True, editable=False)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("evidence")
        verbose_name_plural = _("evidence")
        constraints = [models.UniqueConstraint(fields=["ticket", "platform_ref"], name="evidence_platform_once",
                                               condition=~models.Q(platform_ref=""))]

    def __str__(self) -> str:
        return f"{self.get_role_display()} {self.get_kind_display()} #{self.pk}"


class QuickReply(models.Model):
    """售后话术库: preset replies per store or agency-wide (store empty), with {variables}."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(_("title"), max_length=100)
    body = models.TextField(_("text"), max_length=2000)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    # Agency-wide replies have no store and every member sees them; per-store ones follow the grants.
    tenant_scope = TenantScope(agency="agency", store="store", store_optional=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("quick reply")
        verbose_name_plural = _("quick replies")

    def __str__(self) -> str:
        return self.title


class SensitiveWord(models.Model):
    """敏感词: a word or regular expression refused in replies, per market or for all (market empty)."""

    class Kind(models.TextChoices):
        WORD = "word", _("Word")
        PATTERN = "pattern", _("Pattern (regular expression)")

    market = models.ForeignKey(Market, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.WORD)
    value = models.CharField(_("word or pattern"), max_length=300)
    label = models.CharField(_("why"), max_length=100, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "value"]
        verbose_name = _("sensitive word")
        verbose_name_plural = _("sensitive words")
        constraints = [models.UniqueConstraint(fields=["market", "kind", "value"], name="sensitive_word_unique",
                                               nulls_distinct=False)]

    def __str__(self) -> str:
        return self.value

    def clean(self) -> None:
        # A pattern that does not compile would be skipped at check time; refuse it at entry instead.
        if self.kind == self.Kind.PATTERN:
            try:
                re.compile(self.value)
            except re.error as exc:
                message = _("Not a valid regular expression: %(error)s") % {"error": exc}
                raise ValidationError({"value": message}) from None


class Alert(models.Model):
    """Something a person should look at now (stalled return, deadline close, new buyer message).

    Raised by system code through services.raise_alert, once per (request, kind, key); the portal shows
    the unread ones and their count without reloading.
    """

    class Kind(models.TextChoices):
        STALLED = "stalled", _("Return parcel not scanned (物流断链)")
        BREACH_SOON = "breach_soon", _("Deadline close")
        BREACHED = "breached", _("Deadline missed")
        BUYER_MESSAGE = "buyer_message", _("New buyer message")
        REVIEW_FAILED = "review_failed", _("Needs manual re-review")
        PLATFORM_FAILED = "platform_failed", _("TikTok Shop did not take a decision")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=100, blank=True)  # what makes it distinct (e.g. the tracking number)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    # Set when the cause went away (e.g. the first carrier scan arrived): no longer shown as open.
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    # Set when the e-mail notification went out (aftersales.notifications); stamped once.
    notified_at = models.DateTimeField(_("notified at"), null=True, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        constraints = [models.UniqueConstraint(fields=["ticket", "kind", "key"], name="alert_once")]
        indexes = [models.Index(fields=["agency", "read_at", "created_at"], name="alert_unread")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.ticket_id}"


class SlaBreach(models.Model):
    """One missed deadline of one request. Unique per (request, kind): a breach is handled exactly once."""

    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+")
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.PROTECT, related_name="sla_breaches")
    kind = models.CharField(_("deadline"), max_length=24, choices=SlaKind.choices)
    due_at = models.DateTimeField(_("was due by"))
    created_at = models.DateTimeField(_("recorded at"))

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("missed deadline")
        verbose_name_plural = _("missed deadlines")
        constraints = [models.UniqueConstraint(fields=["ticket", "kind"], name="sla_breach_once")]
        indexes = [models.Index(fields=["agency", "created_at"], name="sla_breach_agency")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.ticket_id}"


class Compensation(models.Model):
    """自动赔付: the automatic compensation a breach owes the buyer — one per breach, granted or capped."""

    class Status(models.TextChoices):
        GRANTED = "granted", _("Granted")
        CAPPED = "capped", _("Capped by the monthly budget")

    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+")
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.PROTECT, related_name="compensations")
    breach = models.OneToOneField(SlaBreach, on_delete=models.PROTECT, related_name="compensation")
    amount = models.DecimalField(_("amount"), **MONEY)
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    created_at = models.DateTimeField(_("created"))

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("compensation")
        verbose_name_plural = _("compensations")
        # The monthly budget check sums one store's granted compensations since the month began.
        indexes = [models.Index(fields=["store", "status", "created_at"], name="compensation_budget")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.get_status_display()})"


class ServiceScoreEntry(models.Model):
    """服务分 ledger: one deduction per breach; a store's score is 5.00 plus the sum of its entries."""

    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+")
    breach = models.OneToOneField(SlaBreach, on_delete=models.PROTECT, related_name="score_entry")
    delta = models.DecimalField(_("change"), max_digits=5, decimal_places=2)
    score_after = models.DecimalField(_("score after"), max_digits=3, decimal_places=2)
    created_at = models.DateTimeField(_("created"))

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("service score entry")
        verbose_name_plural = _("service score ledger")
        indexes = [models.Index(fields=["store", "created_at"], name="score_ledger_store")]

    def __str__(self) -> str:
        return f"{self.delta} → {self.score_after}"


class AutoRule(models.Model):
    """自动规则: per store, or agency-wide (store empty); ordered, the first active match acts (aftersales.rules)."""

    class Action(models.TextChoices):
        APPROVE = "approve", _("Approve")
        REPLY = "reply", _("Reply with a quick reply")
        ASSIGN = "assign", _("Assign (round-robin)")
        TAG = "tag", _("Tag")
        ESCALATE = "escalate", _("Escalate")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("name"), max_length=100)
    position = models.PositiveIntegerField(_("position"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    conditions = models.JSONField(_("conditions"), default=dict, blank=True)
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    # For assign, "_cursor" ({store id: next index}) is the round-robin state, written under a row lock.
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store", store_optional=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("auto-rule")
        verbose_name_plural = _("auto-rules")
        indexes = [models.Index(fields=["agency", "store", "is_active", "position"], name="autorule_order")]

    def __str__(self) -> str:
        return self.name



class Job(models.Model):
    """A background job (exports, reason imports, batch actions) a member started; its progress and result.

    Scoped to the agency; owners see every job of their agency, sub-accounts only their own
    (``aftersales.jobs.jobs_for_actor``). Run by the ``aftersales.run_job`` task (``aftersales.jobs.run``).
    """

    class Kind(models.TextChoices):
        BULK_ACTION = "bulk_action", _("Batch action")
        IMPORT_REASONS = "import_reasons", _("Return reason import")
        EXPORT = "export", _("CSV export")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+", db_index=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", verbose_name=_("started by"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(_("input"), default=dict, blank=True)
    total = models.PositiveIntegerField(_("total"), default=0)
    done = models.PositiveIntegerField(_("done"), default=0)
    result_file = models.FileField(_("result file"), upload_to="jobs/%Y/%m/", blank=True, max_length=200)
    report = models.JSONField(_("report"), default=dict, blank=True)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    # The run that holds the job (a token per claim) and when it last reported: a redelivered task takes over
    # only once the holder has been silent for the lease (aftersales.jobs.LEASE_SECONDS).
    runner = models.CharField(max_length=36, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("background job")
        verbose_name_plural = _("background jobs")
        indexes = [models.Index(fields=["agency", "created_at"], name="job_agency_recent"),
                   models.Index(fields=["agency", "created_by", "created_at"], name="job_creator_recent"),
                   # Only unfinished jobs: the stale-job sweep reads these.
                   models.Index(fields=["updated_at"], name="job_unfinished",
                                condition=models.Q(status__in=["queued", "running"]))]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.get_status_display()}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class OrderVolume(models.Model):
    """Units sold per store, market-local day and line-item category: the return rate's denominator.

    The platform's order data is not synced yet; ERPs push these figures (POST /api/v1/analytics/order-volumes/),
    and a later order sync writes the same rows. One row per (store, day, category), replaced on each push;
    category "" is a store's total for stores that do not split by category (send one or the other, not both).
    """

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+", db_index=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(_("day"))
    category = models.CharField(_("category"), max_length=32, blank=True)
    units_sold = models.PositiveIntegerField(_("units sold"))
    orders = models.PositiveIntegerField(_("orders"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        verbose_name = _("order volume")
        verbose_name_plural = _("order volumes")
        constraints = [models.UniqueConstraint(fields=["store", "day", "category"], name="order_volume_once")]

    def __str__(self) -> str:
        return f"{self.store_id} {self.day} {self.category or '*'}: {self.units_sold}"


# The TikTok Shop connector's models live with its code; imported here so Django registers them in this app.
from aftersales.tiktok.models import (  # noqa: E402, F401
    PartnerApp,
    PlatformDecision,
    SellerAuthorization,
    StoreLink,
    SyncRun,
    WebhookDelivery,
)


class AnalyticsRollup(models.Model):
    """One refresh of an agency's 售后分析 figures (``aftersales.analytics.refresh``): when it was computed and
    which stores it covers. Its figures are immutable; a refresh adds a new rollup and drops the ones before the
    previous, so a dashboard that pinned a rollup still finds it while it reads (no half-refresh, no straddle)."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+", db_index=False)
    computed_at = models.DateTimeField(_("computed at"))
    # The agency's stores when the refresh began; a store made later is computed live until the next refresh.
    store_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        verbose_name = _("analytics rollup")
        verbose_name_plural = _("analytics rollups")
        indexes = [models.Index(fields=["agency", "computed_at"], name="analytics_rollup_latest")]

    def __str__(self) -> str:
        return f"{self.agency_id} @ {self.computed_at:%Y-%m-%d %H:%M:%S}"


class AnalyticsFigure(models.Model):
    """One additive figure of one store over one window (7 or 30 days) of a rollup: a count, units, an amount
    and the greatest text, under a dimension ``kind`` and its keys (a reason, a category, a product and reason, a
    breach kind, a currency and status, a local day of the score). Additive per store — a request belongs to one
    store — so any set of stores is a grouped SUM over its rows (``aftersales.rollups``). Rows without a store
    are that sum over every store the rollup covers, read only when exactly those stores are asked for (an
    owner's all): a few hundred rows instead of a few hundred per store."""

    rollup = models.ForeignKey(AnalyticsRollup, on_delete=models.CASCADE, related_name="figures", db_index=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+", db_index=False)
    store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                              db_index=False)
    days = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16)
    key = models.CharField(max_length=300, blank=True)  # as long as a product name
    key2 = models.CharField(max_length=160, blank=True)  # a reason key
    day = models.DateField(null=True, blank=True)
    count = models.BigIntegerField(default=0)
    units = models.BigIntegerField(null=True, blank=True)
    amount = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    text = models.CharField(max_length=500, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store", store_optional=True)

    class Meta:
        verbose_name = _("analytics figure")
        verbose_name_plural = _("analytics figures")
        # Every read is one rollup and window, the agency's rows or some stores', some kinds (for the reason ×
        # product cells, some products).
        indexes = [models.Index(fields=["rollup", "days", "store", "kind", "key"], name="analytics_figure_read")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} {self.key2}".strip()
