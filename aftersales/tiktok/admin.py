"""Back-office admin of the TikTok Shop connector (imported at the end of ``aftersales/admin.py``).

Staff see every agency, as in the rest of the admin. Credentials are write-only: the partner app's secret is
typed in, never rendered back (an empty field keeps it), and seller tokens are never shown — only their expiry
and status. Changes go through the connector's services: token refresh (``session.refresh``), sync
(``tasks.sync_store``), resending decisions (``outbox.resend``), disconnecting (``connect.disconnect``) and
connecting a seller (``connect.staff_authorize_link``: the state names the app's agency and this staff user, and
only this user can finish it on ``/connect/tiktok/callback/``).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from aftersales.admin import ReadOnlyMixin, error_html, pretty_json
from aftersales.tiktok import connect, session
from aftersales.tiktok.client import TikTokError
from aftersales.tiktok.models import (
    PartnerApp,
    PlatformDecision,
    SellerAuthorization,
    StoreLink,
    SyncRun,
    WebhookDelivery,
)
from stores.errors import AppError


def _failure(exc: AppError) -> str:
    platform = (f" (TikTok Shop {exc.platform_code})" if isinstance(exc, TikTokError)
                and exc.platform_code is not None else "")
    return f"[{exc.code}] {exc.error.message}{platform}"


# --- partner apps ---------------------------------------------------------------------------------
class PartnerAppForm(forms.ModelForm):
    """The secret is write-only: the input never carries the stored value, and leaving it empty keeps it."""

    app_secret = forms.CharField(
        label=_("app secret"), required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted; never shown again. Leave empty to keep the current secret."))

    class Meta:
        model = PartnerApp
        fields = ["agency", "name", "app_key", "app_secret", "service_id", "api_base_url", "auth_base_url",
                  "authorize_url", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial.pop("app_secret", None)  # nothing of the stored value reaches the page

    def clean_app_secret(self):
        value = self.cleaned_data.get("app_secret") or ""
        if not value and self.instance.pk:
            return self.instance.app_secret  # unchanged (still encrypted)
        return value


@admin.register(PartnerApp)
class PartnerAppAdmin(admin.ModelAdmin):
    form = PartnerAppForm
    list_display = ["name", "agency", "app_key", "secret_state", "service_id", "is_active", "created_at"]
    list_filter = ["is_active", "agency"]
    list_select_related = ["agency"]
    search_fields = ["name", "app_key", "service_id", "agency__name"]
    readonly_fields = ["public_id", "secret_state", "webhook_url", "callback_url", "connect_link", "created_at"]
    fieldsets = [
        (None, {"fields": ["agency", "name", "is_active", "public_id"]}),
        (_("Credentials"), {"fields": ["app_key", "app_secret", "secret_state", "service_id"]}),
        (_("Hosts"), {"fields": ["api_base_url", "auth_base_url", "authorize_url"]}),
        (_("Set in Partner Center"), {"fields": ["callback_url", "webhook_url"]}),
        (_("Sellers"), {"fields": ["connect_link", "created_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    @admin.display(description=_("secret"))
    def secret_state(self, obj: PartnerApp) -> str:
        return str(_("set")) if obj is not None and obj.app_secret else str(_("not set"))

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj: PartnerApp) -> str:
        if obj is None or obj.pk is None:
            return "—"
        return format_html("<code>{}</code>", reverse("tiktok:tiktok_webhook", args=[obj.public_id]))

    @admin.display(description=_("redirect URL (authorisation callback)"))
    def callback_url(self, obj: PartnerApp) -> str:
        return format_html("<code>{}</code>", reverse("tiktok:callback"))

    @admin.display(description=_("connect a seller"))
    def connect_link(self, obj: PartnerApp) -> str:
        if obj is None or obj.pk is None:
            return str(_("Save the app first."))
        if not obj.is_active:
            return str(_("The app is inactive."))
        return format_html('<a class="button" href="{}">{}</a> <span class="help">{}</span>',
                           reverse("admin:aftersales_partnerapp_connect", args=[obj.pk]), _("Connect a seller"),
                           _("Opens TikTok Shop's authorisation page; the seller's shops join this app's agency."))

    def get_urls(self):
        return [
            path("<path:object_id>/connect/", self.admin_site.admin_view(self.connect_view),
                 name="aftersales_partnerapp_connect"),
            *super().get_urls(),
        ]

    def connect_view(self, request, object_id):
        app = self.get_object(request, unquote(object_id))
        if app is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, app):
            raise PermissionDenied
        try:
            url = connect.staff_authorize_link(request.user, app)
        except AppError as exc:
            self.message_user(request, _failure(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:aftersales_partnerapp_change", args=[app.pk]))
        return HttpResponseRedirect(url)


# --- seller authorisations ----------------------------------------------------------------------------
@admin.register(SellerAuthorization)
class SellerAuthorizationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Never the tokens: only who, which app, status and expiries."""

    list_display = ["__str__", "open_id", "agency", "app", "status", "access_expires_at", "refresh_expires_at",
                    "updated_at"]
    list_filter = ["status", "agency"]
    list_select_related = ["agency", "app"]
    search_fields = ["seller_name", "open_id", "app__app_key"]
    fields = readonly_fields = ["public_id", "agency", "app", "open_id", "seller_name", "seller_base_region",
                                "status", "access_token_state", "access_expires_at", "refresh_token_state",
                                "refresh_expires_at", "scopes", "authorized_by", "created_at", "updated_at"]
    actions = ["refresh_now"]

    def get_queryset(self, request):
        return (super().get_queryset(request).unscoped()
                .defer("access_token", "refresh_token", "app__app_secret"))

    def has_refresh_permission(self, request) -> bool:
        return request.user.has_perm("aftersales.change_sellerauthorization")

    @admin.display(description=_("access token"))
    def access_token_state(self, obj: SellerAuthorization) -> str:
        return str(_("set")) if obj.access_token else str(_("not set"))

    @admin.display(description=_("refresh token"))
    def refresh_token_state(self, obj: SellerAuthorization) -> str:
        return str(_("set")) if obj.refresh_token else str(_("not set"))

    @admin.display(description=_("granted scopes"))
    def scopes(self, obj: SellerAuthorization) -> str:
        return pretty_json(obj.granted_scopes)

    @admin.action(description=_("Refresh the access token now"), permissions=["refresh"])
    def refresh_now(self, request, queryset):
        done = 0
        for auth in queryset.select_related(None).only("pk", "seller_name", "open_id").order_by("pk"):
            try:
                session.refresh(auth.pk)
            except AppError as exc:
                self.message_user(request, _("%(seller)s: %(error)s") % {"seller": auth, "error": _failure(exc)},
                                  messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, ngettext("%(count)d access token refreshed.",
                                                "%(count)d access tokens refreshed.", done) % {"count": done},
                              messages.SUCCESS)


# --- store links --------------------------------------------------------------------------------------
@admin.register(StoreLink)
class StoreLinkAdmin(admin.ModelAdmin):
    list_display = ["store", "authorization", "sync_enabled", "returns_watermark", "cancellations_watermark",
                    "last_run_at", "last_success_at"]
    list_filter = ["sync_enabled", "agency"]
    list_select_related = ["store__market", "authorization"]
    search_fields = ["store__name", "store__shop_id", "authorization__seller_name", "authorization__open_id"]
    fields = ["agency", "store", "authorization", "sync_enabled", "returns_watermark", "cancellations_watermark",
              "progress_json", "lease_owner", "lease_until", "last_run_at", "last_success_at", "created_at"]
    # Only the switch is edited here; the link itself comes from connecting a seller, and ends by "Disconnect".
    readonly_fields = [f for f in fields if f != "sync_enabled"]
    actions = ["sync_now", "disconnect"]

    def get_queryset(self, request):
        return (super().get_queryset(request).unscoped()
                .defer("authorization__access_token", "authorization__refresh_token"))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("window in progress"))
    def progress_json(self, obj: StoreLink) -> str:
        return pretty_json(obj.progress)

    @admin.action(description=_("Sync now"), permissions=["change"])
    def sync_now(self, request, queryset):
        from aftersales.tiktok.tasks import sync_store  # the task module imports the sync machinery

        store_ids = list(queryset.order_by("pk").values_list("store_id", flat=True))
        for store_id in store_ids:
            sync_store.delay(store_id, SyncRun.Trigger.MANUAL)
        self.message_user(request, ngettext("Sync queued for %(count)d store.", "Sync queued for %(count)d stores.",
                                            len(store_ids)) % {"count": len(store_ids)}, messages.SUCCESS)

    @admin.action(description=_("Disconnect (stop syncing; requests are kept)"), permissions=["change"])
    def disconnect(self, request, queryset):
        done = 0
        for link in queryset.select_related("store").order_by("pk"):
            try:
                connect.disconnect(None, link.store)
            except AppError as exc:
                self.message_user(request, _("%(store)s: %(error)s") % {"store": link.store.name,
                                                                         "error": _failure(exc)}, messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, ngettext("%(count)d store disconnected.", "%(count)d stores disconnected.",
                                                done) % {"count": done}, messages.SUCCESS)


# --- sync reports, webhooks, outbox (read-only) -------------------------------------------------------
@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["store", "trigger", "status", "started_at", "finished_at", "counts_text", "error_code",
                    "platform_code", "message"]
    list_filter = ["status", "trigger"]
    list_select_related = ["store__market"]
    search_fields = ["store__name", "store__shop_id", "error_code", "message"]
    fields = readonly_fields = ["agency", "store", "trigger", "status", "started_at", "finished_at", "counts_json",
                                "unknown_fields", "error", "platform_code", "message"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    @admin.display(description=_("counts"))
    def counts_text(self, obj: SyncRun) -> str:
        return ", ".join(f"{key} {value}" for key, value in sorted((obj.counts or {}).items())) or "—"

    @admin.display(description=_("counts"))
    def counts_json(self, obj: SyncRun) -> str:
        return pretty_json(obj.counts)

    @admin.display(description=_("error code"))
    def error(self, obj: SyncRun) -> str:
        return error_html(obj.error_code)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["received_at", "app", "type", "shop_id", "store", "outcome", "notification_id", "processed_at"]
    list_filter = ["outcome", "type"]
    list_select_related = ["app", "store__market"]
    search_fields = ["notification_id", "shop_id"]
    fields = readonly_fields = ["agency", "app", "notification_id", "type", "shop_id", "store", "outcome", "detail",
                                "received_at", "processed_at", "payload_json"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped().defer("app__app_secret")

    @admin.display(description=_("payload"))
    def payload_json(self, obj: WebhookDelivery) -> str:
        return pretty_json(obj.payload)


@admin.register(PlatformDecision)
class PlatformDecisionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["created_at", "ticket", "operation", "decision", "status", "attempts", "error_code",
                    "platform_code", "last_attempt_at", "confirmed_at"]
    list_filter = ["status", "operation"]
    list_select_related = ["ticket"]
    search_fields = ["ticket__return_id", "ticket__order_id", "idempotency_key"]
    fields = readonly_fields = ["public_id", "agency", "ticket", "operation", "decision", "body_json",
                                "idempotency_key", "status", "attempts", "error", "platform_code", "message",
                                "created_at", "last_attempt_at", "confirmed_at"]
    actions = ["send_again"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("aftersales.change_platformdecision")

    @admin.display(description=_("body sent"))
    def body_json(self, obj: PlatformDecision) -> str:
        return pretty_json(obj.body)

    @admin.display(description=_("error code"))
    def error(self, obj: PlatformDecision) -> str:
        return error_html(obj.error_code)

    @admin.action(description=_("Send again (failed decisions, same idempotency key)"), permissions=["resend"])
    def send_again(self, request, queryset):
        from aftersales.tiktok import outbox

        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        count = outbox.resend(ids)
        self.message_user(request, ngettext("%(count)d decision queued to be sent again.",
                                            "%(count)d decisions queued to be sent again.", count) % {"count": count},
                          messages.SUCCESS if count else messages.WARNING)
        if count < len(ids):
            self.message_user(request, ngettext("%(count)d selected decision was not failed and was left as it is.",
                                                "%(count)d selected decisions were not failed and were left as they are.",  # noqa: E501
                                                len(ids) - count) % {"count": len(ids) - count}, messages.INFO)
