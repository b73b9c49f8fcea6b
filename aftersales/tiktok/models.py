"""The TikTok Shop connector's records (reference §5.1: agency → partner app → seller authorisation → shop).

- ``PartnerApp``: an agency's partner app (app key, secret, service id, the hosts it talks to).
- ``SellerAuthorization``: one seller account's grant (``open_id``) with its access/refresh tokens; one grant can
  cover several shops (cross-border sellers), so tokens live here, not on the store.
- ``StoreLink``: a store's link to its grant plus its pull-sync state (watermarks, the window in flight, the lease
  that keeps one sync per store) — the sync resumes from it after a crash.
- ``SyncRun``: one sync run's report (counts, error with the platform's code).
- ``WebhookDelivery``: every webhook received; unique per (app, notification id), so a replay has no effect.
- ``PlatformDecision``: the outbox of seller decisions to send, each with its stable idempotency key.

Secrets are ``EncryptedField`` values (aftersales.tiktok.crypto): encrypted at rest, masked when printed.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from aftersales.tiktok.crypto import EncryptedField
from stores.models import Agency, Store
from stores.scoping import TenantManager, TenantScope

API_BASE = "https://open-api.tiktokglobalshop.com"
AUTH_BASE = "https://auth.tiktok-shops.com"
AUTHORIZE_URL = "https://services.tiktokshop.com/open/authorize"


class PartnerApp(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("name"), max_length=100)
    app_key = models.CharField(_("app key"), max_length=64)
    app_secret = EncryptedField(_("app secret"), blank=True,
                                help_text=_("Stored encrypted; never shown again. Leave empty to keep it."))
    service_id = models.CharField(_("service id"), max_length=64, blank=True,
                                  help_text=_("From Partner Center; used in the authorisation link."))
    api_base_url = models.URLField(_("API host"), default=API_BASE)
    auth_base_url = models.URLField(_("token host"), default=AUTH_BASE)
    authorize_url = models.URLField(_("authorisation page"), default=AUTHORIZE_URL)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        verbose_name = _("TikTok Shop partner app")
        verbose_name_plural = _("TikTok Shop partner apps")
        constraints = [models.UniqueConstraint(fields=["agency", "app_key"], name="partner_app_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.app_key})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from aftersales.tiktok.session import check_host
        from stores.errors import AppError

        problems = {}
        for name in ("api_base_url", "auth_base_url", "authorize_url"):
            try:
                check_host(getattr(self, name) or "")
            except AppError as exc:
                problems[name] = str(exc.error.message)
        if problems:
            raise ValidationError(problems)


class SellerAuthorization(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        NEEDS_REAUTH = "needs_reauth", _("Needs a new authorisation")
        REVOKED = "revoked", _("Revoked")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey(PartnerApp, on_delete=models.CASCADE, related_name="authorizations")
    open_id = models.CharField(_("seller open id"), max_length=128)
    seller_name = models.CharField(_("seller"), max_length=200, blank=True)
    seller_base_region = models.CharField(_("seller region"), max_length=8, blank=True)
    access_token = EncryptedField(_("access token"), blank=True)
    access_expires_at = models.DateTimeField(_("access token expires"), null=True, blank=True)
    refresh_token = EncryptedField(_("refresh token"), blank=True)
    refresh_expires_at = models.DateTimeField(_("refresh token expires"), null=True, blank=True)
    granted_scopes = models.JSONField(_("granted scopes"), default=list, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    authorized_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", verbose_name=_("authorised by"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        verbose_name = _("seller authorisation")
        verbose_name_plural = _("seller authorisations")
        constraints = [models.UniqueConstraint(fields=["app", "open_id"], name="seller_authorization_unique")]

    def __str__(self) -> str:
        return self.seller_name or self.open_id


class StoreLink(models.Model):
    """A store's connection to the platform and where its pull sync stands."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    store = models.OneToOneField(Store, on_delete=models.CASCADE, related_name="tiktok_link")
    authorization = models.ForeignKey(SellerAuthorization, on_delete=models.CASCADE, related_name="links")
    sync_enabled = models.BooleanField(_("sync on"), default=True)
    # Everything updated before these has been read (per object kind: returns, cancellations).
    returns_watermark = models.DateTimeField(_("returns read up to"), null=True, blank=True)
    cancellations_watermark = models.DateTimeField(_("cancellations read up to"), null=True, blank=True)
    # The window a run is reading: {"kind", "since", "until", "page_token"}; cleared when it ends.
    progress = models.JSONField(default=dict, blank=True, editable=False)
    lease_owner = models.CharField(max_length=36, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        verbose_name = _("TikTok Shop store link")
        verbose_name_plural = _("TikTok Shop store links")

    def __str__(self) -> str:
        return f"{self.store_id} → {self.authorization_id}"


class SyncRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", _("Schedule")
        WEBHOOK = "webhook", _("Webhook")
        MANUAL = "manual", _("Manual")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+", db_index=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+", db_index=False)
    trigger = models.CharField(_("trigger"), max_length=12, choices=Trigger.choices)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # created, updated, unchanged, unknown_status, records, pages, errors
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    # Field names the platform sent that this version does not read: kept in each request's raw payload, named
    # here so someone looks at them (a new API version, a new feature).
    unknown_fields = models.JSONField(_("unknown fields"), default=list, blank=True)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    platform_code = models.BigIntegerField(_("platform code"), null=True, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="store")

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        indexes = [models.Index(fields=["store", "started_at"], name="sync_run_store_recent")]

    def __str__(self) -> str:
        return f"{self.store_id} {self.started_at:%Y-%m-%d %H:%M} {self.status}"


class WebhookDelivery(models.Model):
    class Outcome(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored (type not used)")
        UNKNOWN_SHOP = "unknown_shop", _("Shop not connected")
        FAILED = "failed", _("Failed")

    agency = models.ForeignKey(Agency, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey(PartnerApp, on_delete=models.CASCADE, related_name="+")
    notification_id = models.CharField(_("notification id"), max_length=128)
    type = models.PositiveIntegerField(_("type"))
    shop_id = models.CharField(_("shop id"), max_length=64, blank=True)
    store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(_("payload"), default=dict)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, default=Outcome.RECEIVED)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency")

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("TikTok Shop webhook")
        verbose_name_plural = _("TikTok Shop webhooks")
        constraints = [models.UniqueConstraint(fields=["app", "notification_id"], name="tts_webhook_once")]
        # Only deliveries not yet handed to a worker: the beat re-queue reads these.
        indexes = [models.Index(fields=["received_at"], name="tts_webhook_pending",
                                condition=models.Q(outcome="received"))]

    def __str__(self) -> str:
        return f"{self.type} {self.notification_id}"


class PlatformDecision(models.Model):
    """A seller decision to send to the platform (outbox): written with the decision, sent after commit."""

    class Status(models.TextChoices):
        SENDING = "sending", _("Sending")
        CONFIRMED = "confirmed", _("Confirmed by TikTok Shop")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+", db_index=False)
    ticket = models.ForeignKey("aftersales.AfterSalesRequest", on_delete=models.CASCADE,
                               related_name="platform_decisions")
    # approve | reject (returns) or approve_cancel | reject_cancel (cancellations)
    operation = models.CharField(_("operation"), max_length=16)
    decision = models.CharField(_("decision"), max_length=40)
    body = models.JSONField(_("body sent"), default=dict, blank=True)
    # Stable per decision: a retry (ours or Celery's redelivery) sends the same key, the platform applies once.
    idempotency_key = models.CharField(_("idempotency key"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.SENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    platform_code = models.BigIntegerField(_("platform code"), null=True, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)

    objects = TenantManager()
    tenant_scope = TenantScope(agency="agency", store="ticket__store")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("decision sent to TikTok Shop")
        verbose_name_plural = _("decisions sent to TikTok Shop")
        indexes = [models.Index(fields=["last_attempt_at"], name="platform_decision_sending",
                                condition=models.Q(status="sending"))]

    def __str__(self) -> str:
        return f"{self.decision} · {self.get_status_display()}"
