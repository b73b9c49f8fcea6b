"""Tenancy kernel: agencies, markets, stores, members, roles and their guardian grants, API tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from stores import calendars, errors
from stores.markets import MARKET_NAMES
from stores.permissions import CUSTOM_STORE_PERMISSIONS, StorePerm
from stores.scoping import TenantManager, TenantScope


class Market(models.Model):
    """A TikTok Shop market (站点). Seeded by a migration; fixes currency and time zone."""

    code = models.CharField(_("code"), max_length=2, unique=True)
    country = models.CharField(_("ISO country"), max_length=2)
    name = models.CharField(_("name"), max_length=64)
    currency = models.CharField(_("currency"), max_length=3)
    time_zone = models.CharField(_("time zone"), max_length=64)
    languages = ArrayField(models.CharField(max_length=8), verbose_name=_("languages"), default=list)
    region = models.CharField(_("region"), max_length=8)
    is_open = models.BooleanField(_("open for sellers"), default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("market")
        verbose_name_plural = _("markets")

    def __str__(self) -> str:
        return f"{self.code} · {self.display_name}"

    @property
    def display_name(self) -> str:
        return str(MARKET_NAMES.get(self.code, self.name))


class Agency(models.Model):
    """The tenant: an agency (代运营公司) or a seller's own company."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("agency")
        verbose_name_plural = _("agencies")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Ties a user to exactly one agency, as owner or sub-account (子账号)."""

    class Kind(models.TextChoices):
        OWNER = "owner", _("Owner")
        SUB_ACCOUNT = "sub_account", _("Sub-account (子账号)")

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="memberships")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.SUB_ACCOUNT)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.agency} ({self.get_kind_display()})"

    @property
    def is_owner(self) -> bool:
        return self.kind == self.Kind.OWNER


class Store(models.Model):
    """One TikTok shop (小店) in one market, run by one agency."""

    class Eligibility(models.TextChoices):
        ELIGIBLE = "eligible", _("Eligible")
        INCOMPLETE = "incomplete", _("Checks missing")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="stores")
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="stores")
    name = models.CharField(_("name"), max_length=200)
    shop_id = models.CharField(_("platform shop id"), max_length=64, unique=True)
    shop_cipher = models.CharField(_("shop cipher"), max_length=128, blank=True)
    # Seller entity checks (DOMAIN "Eligibility"): all must hold for the store to qualify.
    business_licence_verified = models.BooleanField(_("business licence verified"), default=False)
    legal_person_id_verified = models.BooleanField(_("legal-person ID verified"), default=False)
    bank_account_verified = models.BooleanField(_("bank account verified"), default=False)
    phone_bound = models.BooleanField(_("app and Seller Center share one phone"), default=False)
    service_score = models.DecimalField(
        _("service score"), max_digits=3, decimal_places=2, default=Decimal("5.00"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("5"))],
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="self")

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        permissions = CUSTOM_STORE_PERMISSIONS
        indexes = [models.Index(fields=["agency", "name", "id"], name="store_agency_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.market.code})"

    def missing_checks(self) -> list[str]:
        checks = [
            (self.business_licence_verified, _("business licence")),
            (self.legal_person_id_verified, _("legal-person ID")),
            (self.bank_account_verified, _("bank account")),
            (self.phone_bound, _("phone bound to app and Seller Center")),
            (self.market.is_open, _("an open market")),
        ]
        return [str(label) for ok, label in checks if not ok]

    @property
    def eligibility(self) -> str:
        return self.Eligibility.INCOMPLETE if self.missing_checks() else self.Eligibility.ELIGIBLE


class StoreUserObjectPermission(UserObjectPermissionBase):
    """Guardian grant of one permission on one Store to one user (direct FK: fast and joinable)."""

    content_object = models.ForeignKey(Store, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["user", "permission", "content_object"], name="store_uperm_lookup")]


class StoreGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Store, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [models.Index(fields=["group", "permission", "content_object"], name="store_gperm_lookup")]


class Role(models.Model):
    """A named bundle of StorePerm permissions, defined per agency (角色)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="roles")
    slug = models.SlugField(_("slug"), max_length=50)
    name = models.CharField(_("name"), max_length=100)
    permissions = ArrayField(
        models.CharField(max_length=32, choices=StorePerm.choices), verbose_name=_("permissions"), default=list
    )
    is_template = models.BooleanField(_("created from a template"), default=False)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        ordering = ["name"]
        verbose_name = _("role")
        verbose_name_plural = _("roles")
        constraints = [models.UniqueConstraint(fields=["agency", "slug"], name="role_unique_slug")]

    def __str__(self) -> str:
        return self.name


class RoleAssignment(models.Model):
    """A sub-account holds a role on one store. Guardian rows are derived from these."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="assignments")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="assignments")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="role_assignments")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        verbose_name = _("role assignment")
        verbose_name_plural = _("role assignments")
        constraints = [
            models.UniqueConstraint(fields=["membership", "role", "store"], name="role_assignment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.membership.user} → {self.role} @ {self.store}"


class ApiToken(models.Model):
    """A per-user API key. Only its SHA-256 is stored; the key is shown once at creation."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100, default="default")
    prefix = models.CharField(_("prefix"), max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class Heartbeat(models.Model):
    """Last time a background component proved it is alive (beat → broker → worker → database).

    Not tenant data. ``/healthz`` reports its age so operators (and ``./dev run`` users) can
    see that the worker and beat are really running, not just started.
    """

    name = models.CharField(max_length=64, primary_key=True)
    seen_at = models.DateTimeField()
    request_id = models.CharField(max_length=80, blank=True)

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.name} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"


def default_warning_offsets() -> list[int]:
    """4 h and 1 h before a deadline (issue 5); a callable so rows never share one list."""
    return [240, 60]


class MarketPolicy(models.Model):
    """After-sales rules of one market, as data (DESIGN rule 7). Seeded by a migration, edited in admin."""

    class ShippingPayer(models.TextChoices):
        PLATFORM_FIRST_LEG = "platform_first_leg", _("Platform pays the buyer's leg; seller pays the leg back")
        SELLER = "seller", _("Seller pays return shipping")

    market = models.OneToOneField(Market, on_delete=models.CASCADE, related_name="policy")
    commission_rate = models.DecimalField(_("commission rate"), max_digits=5, decimal_places=4,
                                          default=Decimal("0.0800"),
                                          validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))])
    return_shipping_payer = models.CharField(_("who pays return shipping"), max_length=24,
                                             choices=ShippingPayer.choices, default=ShippingPayer.SELLER)
    scan_watch_hours = models.PositiveIntegerField(
        _("hours for the first carrier scan (物流断链)"), default=48,
        help_text=_("A return parcel not scanned within this many hours of registration is marked stalled."))
    no_reason_exempt_categories = ArrayField(
        models.CharField(max_length=32), verbose_name=_("categories exempt from no-reason returns"), default=list,
        blank=True)
    prepaid_return_label = models.BooleanField(_("prepaid return labels (预付运费退货标签)"), default=False)
    # --- SLA (aftersales.sla). Seeded by stores/migrations/0008_policy_sla.py ---
    first_response_hours = models.PositiveIntegerField(
        _("first human response within (hours)"), null=True, blank=True,
        help_text=_("首次人工处理: 24 h in UK, MY, TH, VN, PH (Seller Policy v3.2 §7.1, DOMAIN seed); empty where "
                    "the market has no such rule. Missing it triggers automatic compensation."))
    auto_approve_hours = models.PositiveIntegerField(
        _("platform auto-approval after (hours)"), default=48,
        help_text=_("Refund and return requests still awaiting review are approved by the platform after this "
                    "long (issue 5, seed default 48 h)."))
    replacement_response_hours = models.PositiveIntegerField(
        _("replacement response within (hours)"), default=24,
        help_text=_("Exchange requests must be reviewed within this long (issue 5, seed default 24 h)."))
    warning_offsets_minutes = ArrayField(
        models.PositiveIntegerField(), verbose_name=_("warn before a deadline (minutes)"),
        default=default_warning_offsets, blank=True,
        help_text=_("An alert is raised this many minutes before each deadline (default 4 h and 1 h)."))
    compensation_amount = models.DecimalField(
        _("automatic compensation per request"), max_digits=14, decimal_places=2, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("自动赔付 in the market currency when the first human response is late. The seed names the "
                    "rule but no amount: the seeded values are our defaults (about 5 USD), to be adjusted."))
    compensation_monthly_budget = models.DecimalField(
        _("compensation budget per store and month"), max_digits=14, decimal_places=2, default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Compensations beyond this total in a calendar month (market time) are recorded as capped "
                    "(ERR_SLA_002) instead of granted. Seeded as 100 × the per-request amount (our default)."))
    score_penalty = models.DecimalField(
        _("service score deduction per missed deadline"), max_digits=4, decimal_places=2, default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("服务分: each late response −0.5 points (Seller Score Handbook 2024, DOMAIN seed)."))
    score_floor_for_traffic = models.DecimalField(
        _("traffic down-weighting below score"), max_digits=3, decimal_places=2, default=Decimal("4.80"),
        help_text=_("流量降权 below this service score (Seller Score Handbook 2024, DOMAIN seed)."))
    exposure_loss_per_tenth = models.DecimalField(
        _("exposure lost per 0.1 below (percent)"), max_digits=5, decimal_places=2, default=Decimal("3.20"),
        help_text=_("Each 0.1 below the threshold costs about this share of natural exposure (DOMAIN seed: 3.2 %)."))
    source = models.CharField(_("source"), max_length=200, blank=True)
    # --- business hours (stores/calendars.py). Seeded empty everywhere: see docs/ARCHITECTURE.md "Business hours".
    business_hours_kinds = models.JSONField(
        _("deadlines counted in business hours"), default=list, blank=True,
        help_text=_("These deadlines count only the working hours of the market's business calendar (holidays "
                    "closed); the others run on the wall clock. Empty in every market as seeded: the platform's "
                    "clocks are wall-clock hours. The platform's own deadline can never be counted this way."))

    class Meta:
        verbose_name = _("market policy")
        verbose_name_plural = _("market policies")

    def __str__(self) -> str:
        return f"{self.market.code} policy"

    def clean(self) -> None:
        super().clean()
        try:
            self.business_hours_kinds = clean_business_hours_kinds(self.business_hours_kinds)
        except calendars.CalendarError as exc:
            raise ValidationError({"business_hours_kinds": ValidationError(exc.message, code=exc.code)}) from None

    def business_calendar(self) -> BusinessCalendar | None:
        """The market's calendar, or None. No query when loaded with ``select_related("market__business_calendar")``."""
        try:
            return self.market.business_calendar
        except ObjectDoesNotExist:
            return None

    def deadline_after(self, start: dt.datetime, hours: float, kind: str) -> dt.datetime:
        """``start`` + ``hours``: working hours of the market's calendar when ``kind`` is listed in
        ``business_hours_kinds`` and the market has a calendar, else wall-clock hours."""
        if kind in (self.business_hours_kinds or ()) and kind in BUSINESS_HOURS_KINDS:
            calendar = self.business_calendar()
            if calendar is not None:
                return calendars.add_business_hours(start, hours, calendar)
        return start + dt.timedelta(hours=hours)


# SLA deadline kinds that may be counted in business hours: aftersales.models.SlaKind without PLATFORM. Plain
# strings because stores may not import aftersales (tests/test_architecture.py); tests/test_calendars.py checks
# that the two lists agree. Labels repeat SlaKind's (same msgids, so one translation).
BUSINESS_HOURS_KINDS = {
    "first_response": _("First human response (首次人工处理)"),
    "auto_approve": _("Platform auto-approval"),
    "replacement_response": _("Replacement response"),
}
WALL_CLOCK_ONLY_KINDS = ("platform",)  # the platform's own seller_next_action_response deadline: a timestamp


def clean_business_hours_kinds(value) -> list[str]:
    """The list, de-duplicated in the order given; ``CalendarError`` (``ERR_SLA_007``) for anything else."""
    def fail(message):
        raise calendars.CalendarError(errors.ERR_SLA_007, message, field="business_hours_kinds")

    if value in (None, ""):
        return []
    if not isinstance(value, list):
        fail(_("Give a list of deadline kinds."))
    kinds: list[str] = []
    for kind in value:
        if kind in WALL_CLOCK_ONLY_KINDS:
            fail(_("“%(kind)s” is the platform's own deadline, a timestamp it sends: it always runs on the wall "
                   "clock.") % {"kind": kind})
        if not isinstance(kind, str) or kind not in BUSINESS_HOURS_KINDS:
            fail(_("Unknown deadline kind “%(kind)s” (use %(kinds)s).")
                 % {"kind": kind, "kinds": ", ".join(BUSINESS_HOURS_KINDS)})
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def default_working_hours() -> dict[str, list[list[str]]]:
    """Mon–Fri 09:00–18:00; a callable so rows never share one dict."""
    return {day: [["09:00", "18:00"]] for day in calendars.WEEKDAYS[:5]}


class BusinessCalendar(models.Model):
    """Working hours and holidays of one market (Zammad-style), for deadlines counted in business hours.

    Used only for the deadline kinds listed in the market policy's ``business_hours_kinds`` (none as seeded).
    Seeded by stores/migrations/0010_seed_business_calendars.py; edited in admin. The arithmetic is in
    stores/calendars.py.
    """

    market = models.OneToOneField(Market, on_delete=models.CASCADE, related_name="business_calendar",
                                  verbose_name=_("market"))
    time_zone = models.CharField(
        _("time zone"), max_length=64, blank=True,
        help_text=_("IANA name such as Europe/London. Left empty, the market's time zone is filled in."))
    working_hours = models.JSONField(
        _("working hours"), default=default_working_hours, blank=True,
        help_text=_("Local wall time per weekday, several ranges a day allowed (lunch break), \"24:00\" may end a "
                    "day; a weekday left out is closed. Example: {\"mon\": [[\"09:00\", \"12:00\"], "
                    "[\"13:00\", \"18:00\"]], \"tue\": [[\"09:00\", \"18:00\"]]}."))
    holidays = models.JSONField(
        _("holidays"), default=list, blank=True,
        help_text=_("Local dates closed all day, as \"YYYY-MM-DD\" or {\"date\": \"YYYY-MM-DD\", \"name\": "
                    "\"…\"}. Movable holidays (lunar new year, Eid, Easter) must be added for each year."))
    source = models.CharField(_("source"), max_length=200, blank=True)

    class Meta:
        ordering = ["market__code"]
        verbose_name = _("business calendar")
        verbose_name_plural = _("business calendars")

    def __str__(self) -> str:
        return f"{self.market.code} business calendar"

    def save(self, *args, **kwargs) -> None:
        self._fill_time_zone()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        self._fill_time_zone()
        problems: dict[str, list[ValidationError]] = {}
        checks = [
            ("time_zone", lambda: calendars.zone_for(self.time_zone)),
            ("working_hours", lambda: calendars.parse_working_hours(self.working_hours)),
            ("holidays", lambda: calendars.parse_holidays(self.holidays)),
        ]
        for name, check in checks:
            try:
                check()
            except calendars.CalendarError as exc:
                problems.setdefault(exc.field or name, []).append(ValidationError(exc.message, code=exc.code))
        if not problems:
            try:
                self.as_calendar()
            except calendars.CalendarError as exc:
                problems.setdefault(exc.field or "working_hours", []).append(
                    ValidationError(exc.message, code=exc.code))
        if problems:
            raise ValidationError(problems)

    def as_calendar(self) -> calendars.Calendar:
        """The validated calendar value (cached on the instance while its fields stay the same)."""
        zone = self.time_zone or self.market.time_zone
        key = calendars.calendar_key(zone, self.working_hours, self.holidays)
        cached = self.__dict__.get("_calendar")
        if cached is None or cached[0] != key:
            cached = (key, calendars.Calendar.build(zone, self.working_hours, self.holidays))
            self.__dict__["_calendar"] = cached
        return cached[1]

    def _fill_time_zone(self) -> None:
        if not self.time_zone and self.market_id:
            self.time_zone = self.market.time_zone


class IdempotencyKey(models.Model):
    """The first result of a money-moving write sent with an ``Idempotency-Key`` header (stores/api/idempotency.py).

    Scoped per user (unique user + key). Written in the same transaction as the write itself, so the effect and
    its recorded response commit — or roll back — together. Rows older than ``IDEMPOTENCY_TTL`` count as absent
    and are purged lazily by later keyed requests.
    """

    # No index of its own: the unique (user, key) constraint leads with it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys",
                             db_index=False)
    key = models.CharField(_("key"), max_length=255)
    method = models.CharField(_("method"), max_length=10)
    path = models.CharField(_("path"), max_length=512)
    body_sha256 = models.CharField(_("body SHA-256"), max_length=64)
    status = models.PositiveSmallIntegerField(_("response status"))
    # The rendered JSON text, not jsonb: a replay returns the very same bytes (jsonb would reorder the keys).
    response = models.TextField(_("response body (JSON)"), blank=True)
    created_at = models.DateTimeField(_("created at"), db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
