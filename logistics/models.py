"""Return logistics: carriers, return shipments and their tracking, interception, addresses, drop-off
points, prepaid return labels, carrier webhook receipts."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aftersales.models import AfterSalesRequest
from stores.models import Agency, Market, Store
from stores.scoping import TenantManager, TenantScope


class Carrier(models.Model):
    """A carrier and the tracking-number format we can check for it (editable in admin)."""

    class FormatKind(models.TextChoices):
        PACKAGE = "package", _("tracking-numbers package (check digit)")
        S10 = "s10", _("UPU S10 postal item (check digit)")
        PATTERN = "pattern", _("Pattern only")
        NONE = "none", _("No known format")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    markets = ArrayField(models.CharField(max_length=2), verbose_name=_("markets"), default=list)
    format_check = models.CharField(_("format check"), max_length=8, choices=FormatKind.choices,
                                    default=FormatKind.NONE)
    # For PACKAGE: courier codes of the tracking-numbers package that count as this carrier (e.g. "ups").
    package_couriers = ArrayField(models.CharField(max_length=32), verbose_name=_("package courier codes"),
                                  default=list, blank=True)
    # For PATTERN (and as an extra accepted form for S10/PACKAGE): a full-match regular expression.
    pattern = models.CharField(_("pattern"), max_length=300, blank=True)
    format_hint = models.CharField(_("expected format"), max_length=200, blank=True)
    # Prefixes scanners or copy-paste add before the number (e.g. "TRK:"), stripped on entry.
    strip_prefixes = ArrayField(models.CharField(max_length=16), verbose_name=_("prefixes to strip"),
                                default=list, blank=True)
    aftership_slug = models.CharField(_("AfterShip slug"), max_length=64, blank=True)
    seventeentrack_code = models.PositiveIntegerField(_("17TRACK carrier code"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("carrier")
        verbose_name_plural = _("carriers")

    def __str__(self) -> str:
        return self.name


class ShipmentStatus(models.TextChoices):
    """Our normalised tracking status (AfterShip and 17TRACK statuses map onto it)."""

    REGISTERED = "registered", _("Registered, not scanned yet")
    INFO_RECEIVED = "info_received", _("Info received")
    IN_TRANSIT = "in_transit", _("In transit")
    OUT_FOR_DELIVERY = "out_for_delivery", _("Out for delivery")
    AVAILABLE_FOR_PICKUP = "available_for_pickup", _("Available for pickup")
    DELIVERED = "delivered", _("Delivered")
    FAILED_ATTEMPT = "failed_attempt", _("Delivery attempt failed")
    EXCEPTION = "exception", _("Exception")
    RETURNED_TO_SENDER = "returned_to_sender", _("Returned to sender")
    EXPIRED = "expired", _("No tracking information (expired)")
    UNKNOWN = "unknown", _("Unknown")


# Statuses that prove the carrier has the parcel: the first of them clears the 48 h scan watch.
SCANNED_STATUSES = frozenset({
    ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY, ShipmentStatus.AVAILABLE_FOR_PICKUP,
    ShipmentStatus.DELIVERED, ShipmentStatus.FAILED_ATTEMPT, ShipmentStatus.EXCEPTION,
    ShipmentStatus.RETURNED_TO_SENDER,
})


class ReturnShipment(models.Model):
    """The buyer's return parcel for one request (one per request; a new number keeps the old in history)."""

    class FormatCheck(models.TextChoices):
        VERIFIED = "verified", _("Format verified")
        UNVERIFIED = "unverified", _("Format unverified (carrier has no known format)")

    class Validation(models.TextChoices):
        PENDING = "pending", _("Checking with the carrier")
        VALID = "valid", _("Known to the carrier")
        INVALID = "invalid", _("Unknown to the carrier")
        FAILED = "failed", _("Check failed")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    ticket = models.OneToOneField(AfterSalesRequest, on_delete=models.PROTECT, related_name="return_shipment")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tracking_number = models.CharField(_("tracking number"), max_length=64, db_index=True)
    format_check = models.CharField(_("format"), max_length=12, choices=FormatCheck.choices)
    registered_at = models.DateTimeField(_("registered at"))
    first_scan_at = models.DateTimeField(_("first scan at"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=24, choices=ShipmentStatus.choices,
                              default=ShipmentStatus.REGISTERED)
    status_at = models.DateTimeField(_("status at"), null=True, blank=True)
    # The 48 h scan watch: due while no scan has arrived; the sweep claims due rows with SKIP LOCKED.
    scan_due_at = models.DateTimeField(_("scan due by"), null=True, blank=True)
    stalled_at = models.DateTimeField(_("stalled since"), null=True, blank=True)
    validation = models.CharField(_("carrier check"), max_length=8, choices=Validation.choices,
                                  default=Validation.PENDING)
    validation_attempts = models.PositiveIntegerField(_("carrier check attempts"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        verbose_name = _("return shipment")
        verbose_name_plural = _("return shipments")
        indexes = [
            # Only unscanned, not-yet-stalled shipments are ever due: the partial index stays small and an
            # idle sweep is one probe.
            models.Index(fields=["scan_due_at"], name="shipment_scan_due",
                         condition=Q(first_scan_at__isnull=True, stalled_at__isnull=True,
                                     scan_due_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.carrier or '?'} {self.tracking_number}"


class TrackingNumberChange(models.Model):
    """History of the numbers a shipment had: updating a number never loses the old one."""

    shipment = models.ForeignKey(ReturnShipment, on_delete=models.CASCADE, related_name="number_history")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tracking_number = models.CharField(_("tracking number"), max_length=64)
    replaced_at = models.DateTimeField(_("replaced at"))
    replaced_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")

    class Meta:
        ordering = ["replaced_at", "id"]
        verbose_name = _("tracking number change")
        verbose_name_plural = _("tracking number changes")

    def __str__(self) -> str:
        return self.tracking_number


class TrackingEvent(models.Model):
    """One checkpoint of a shipment, from a carrier webhook, the carrier check, or a person."""

    class Source(models.TextChoices):
        AFTERSHIP = "aftership", "AfterShip"
        SEVENTEENTRACK = "17track", "17TRACK"
        CARRIER_CHECK = "carrier_check", _("Carrier check")
        MANUAL = "manual", _("Manual")

    shipment = models.ForeignKey(ReturnShipment, on_delete=models.CASCADE, related_name="events")
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    occurred_at = models.DateTimeField(_("time"))
    status = models.CharField(_("status"), max_length=24, choices=ShipmentStatus.choices)
    raw_status = models.CharField(_("carrier status"), max_length=64, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    location = models.CharField(_("location"), max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name = _("tracking event")
        verbose_name_plural = _("tracking events")
        indexes = [models.Index(fields=["shipment", "occurred_at"], name="tracking_event_timeline")]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.status}"


class CarrierCheckAttempt(models.Model):
    """Every attempt of the carrier/aggregator check task, kept for troubleshooting."""

    shipment = models.ForeignKey(ReturnShipment, on_delete=models.CASCADE, related_name="check_attempts")
    tracking_number = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField()
    outcome = models.CharField(max_length=16)  # valid / invalid / retry / failed / skipped
    error_code = models.CharField(max_length=40, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("carrier check attempt")
        verbose_name_plural = _("carrier check attempts")

    def __str__(self) -> str:
        return f"#{self.attempt} {self.outcome}"


class WebhookEndpoint(models.Model):
    """An agency's tracking-aggregator account: the secret that signs its webhooks (AfterShip, 17TRACK)."""

    class Provider(models.TextChoices):
        AFTERSHIP = "aftership", "AfterShip"
        SEVENTEENTRACK = "17track", "17TRACK"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices)
    # AfterShip: the webhook secret; 17TRACK: the API key (it signs webhooks).
    secret = models.CharField(_("secret"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        constraints = [models.UniqueConstraint(fields=["agency", "provider"], name="webhook_endpoint_unique")]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} · {self.agency}"


class WebhookReceipt(models.Model):
    """One delivered webhook: the dedupe key (provider, event id) makes a replay a no-op."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=128)
    agency = models.ForeignKey(Agency, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=24)  # applied / unknown_number / ignored / forged
    tracking_number = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("webhook receipt")
        verbose_name_plural = _("webhook receipts")
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_receipt_once",
                                               condition=~Q(event_id=""))]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_id} {self.outcome}"


class Interception(models.Model):
    """物流拦截: stopping an outgoing (seller → buyer) parcel, and how it ended."""

    class Outcome(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        SUCCEEDED = "succeeded", _("Intercepted")
        FAILED = "failed", _("Failed")
        TOO_LATE = "too_late", _("Too late (already delivered)")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    ticket = models.ForeignKey(AfterSalesRequest, on_delete=models.PROTECT, related_name="interceptions")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tracking_number = models.CharField(_("tracking number"), max_length=64)
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices, default=Outcome.REQUESTED)
    requested_at = models.DateTimeField(_("requested at"))
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    note = models.CharField(_("note"), max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = _("interception")
        verbose_name_plural = _("interceptions")
        constraints = [
            # One open interception per request at a time.
            models.UniqueConstraint(fields=["ticket"], condition=Q(outcome="requested"),
                                    name="interception_one_open"),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_number} {self.get_outcome_display()}"


class ReturnAddress(models.Model):
    """退货地址管理: where returns go, per store, market and warehouse; one default per store and market."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="return_addresses")
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="+")
    warehouse = models.CharField(_("warehouse"), max_length=100)
    contact_name = models.CharField(_("contact"), max_length=100)
    phone = models.CharField(_("phone (E.164)"), max_length=20)
    line1 = models.CharField(_("address line 1"), max_length=200)
    line2 = models.CharField(_("address line 2"), max_length=200, blank=True)
    city = models.CharField(_("city"), max_length=100)
    region = models.CharField(_("state / province"), max_length=100, blank=True)
    postcode = models.CharField(_("postcode"), max_length=20, blank=True)
    is_default = models.BooleanField(_("default for this market"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        ordering = ["store", "market", "-is_default", "warehouse"]
        verbose_name = _("return address")
        verbose_name_plural = _("return addresses")
        constraints = [models.UniqueConstraint(fields=["store", "market"], condition=Q(is_default=True),
                                               name="return_address_one_default")]

    def __str__(self) -> str:
        return f"{self.warehouse}, {self.city}"


class DropOffPoint(models.Model):
    """A partner sorting centre or drop-off point where buyers hand in returns (ID first). Not tenant data."""

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="+")
    partner = models.CharField(_("partner"), max_length=64)
    code = models.CharField(_("code"), max_length=64)
    name = models.CharField(_("name"), max_length=200)
    address = models.CharField(_("address"), max_length=300, blank=True)
    latitude = models.FloatField(_("latitude"))
    longitude = models.FloatField(_("longitude"))
    opening_hours = models.CharField(_("opening hours"), max_length=200, blank=True)
    pickup_lead_hours = models.PositiveIntegerField(_("pickup lead time (hours)"), default=24)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["market", "partner", "name"]
        verbose_name = _("drop-off point")
        verbose_name_plural = _("drop-off points")
        constraints = [models.UniqueConstraint(fields=["partner", "code"], name="dropoff_unique_code")]
        # Nearest-N queries filter a bounding box first: a composite index on the coordinates serves it.
        indexes = [models.Index(fields=["market", "latitude", "longitude"], name="dropoff_bbox",
                                condition=Q(is_active=True))]

    def __str__(self) -> str:
        return f"{self.partner} {self.name}"


class ReturnLabel(models.Model):
    """A prepaid return label (预付运费退货标签, US) as a PDF with a Code128 barcode of the tracking number."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.PROTECT, related_name="+")
    ticket = models.OneToOneField(AfterSalesRequest, on_delete=models.PROTECT, related_name="return_label")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="+")
    tracking_number = models.CharField(_("tracking number"), max_length=64)
    file = models.FileField(_("label PDF"), upload_to="labels/%Y/%m/")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        verbose_name = _("return label")
        verbose_name_plural = _("return labels")

    def __str__(self) -> str:
        return f"{self.carrier} {self.tracking_number}"
