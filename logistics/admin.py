"""Back-office admin for logistics. Reference data (carriers, drop-off points) is editable; records of what
happened (shipments, events, check attempts, webhook receipts, interceptions, labels) are read-only."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from logistics.models import (
    Carrier,
    CarrierCheckAttempt,
    DropOffPoint,
    Interception,
    ReturnAddress,
    ReturnLabel,
    ReturnShipment,
    TrackingEvent,
    TrackingNumberChange,
    WebhookEndpoint,
    WebhookReceipt,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "format_check", "format_hint", "markets_list", "is_active"]
    list_filter = ["format_check", "is_active"]
    search_fields = ["name", "code", "aftership_slug"]

    @admin.display(description=_("markets"))
    def markets_list(self, obj):
        return ", ".join(obj.markets)


class TrackingEventInline(ReadOnlyInline):
    model = TrackingEvent
    fields = readonly_fields = ["occurred_at", "status", "raw_status", "message", "location", "source"]
    ordering = ["occurred_at", "id"]


class NumberHistoryInline(ReadOnlyInline):
    model = TrackingNumberChange
    fields = readonly_fields = ["replaced_at", "carrier", "tracking_number", "replaced_by"]


class CheckAttemptInline(ReadOnlyInline):
    model = CarrierCheckAttempt
    fields = readonly_fields = ["at", "attempt", "tracking_number", "outcome", "error_code", "detail"]


@admin.register(ReturnShipment)
class ReturnShipmentAdmin(ReadOnlyAdmin):
    list_display = ["tracking_number", "carrier", "request_link", "status", "format_check", "validation",
                    "registered_at", "first_scan_at", "scan_due_at", "stalled_at"]
    list_filter = ["status", "format_check", "validation", "carrier"]
    search_fields = ["tracking_number", "ticket__order_id", "ticket__return_id"]
    list_select_related = ["carrier", "ticket"]
    inlines = [TrackingEventInline, NumberHistoryInline, CheckAttemptInline]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()  # back office: every tenant, by name

    @admin.display(description=_("after-sales request"))
    def request_link(self, obj):
        return format_html('<a href="/admin/aftersales/aftersalesrequest/{}/change/">{}</a>',
                           obj.ticket_id, obj.ticket.return_id)


@admin.register(Interception)
class InterceptionAdmin(ReadOnlyAdmin):
    list_display = ["tracking_number", "ticket", "outcome", "requested_at", "decided_at"]
    list_filter = ["outcome"]
    search_fields = ["tracking_number", "ticket__order_id"]
    list_select_related = ["ticket"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()


@admin.register(ReturnAddress)
class ReturnAddressAdmin(ReadOnlyAdmin):
    # Edited through the services (phone validation, one default per store and market).
    list_display = ["warehouse", "store", "market", "city", "phone", "is_default"]
    list_filter = ["market", "is_default"]
    search_fields = ["warehouse", "city", "store__name"]
    list_select_related = ["store__market", "market"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()


@admin.register(DropOffPoint)
class DropOffPointAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "market", "latitude", "longitude", "pickup_lead_hours", "is_active"]
    list_filter = ["market", "partner", "is_active"]
    search_fields = ["name", "code", "partner", "address"]


@admin.register(ReturnLabel)
class ReturnLabelAdmin(ReadOnlyAdmin):
    list_display = ["tracking_number", "carrier", "ticket", "created_at", "download"]
    search_fields = ["tracking_number", "ticket__order_id"]
    list_select_related = ["carrier", "ticket"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    @admin.display(description=_("label PDF"))
    def download(self, obj):
        url = reverse("portal:return_label", args=[obj.public_id])
        return format_html('<a href="{}">PDF</a>', url) if obj.file else "—"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["agency", "provider", "public_id", "is_active", "created_at"]
    list_filter = ["provider", "is_active"]
    readonly_fields = ["public_id", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).unscoped()

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The secret is entered, never shown again.
        form = super().get_form(request, obj, change, **kwargs)
        from django import forms

        form.base_fields["secret"].widget = forms.PasswordInput(render_value=False)
        form.base_fields["secret"].required = obj is None
        return form

    def save_model(self, request, obj, form, change):
        if change and not form.cleaned_data.get("secret"):
            obj.secret = self.get_queryset(request).get(pk=obj.pk).secret  # keep the stored secret
        super().save_model(request, obj, form, change)


@admin.register(WebhookReceipt)
class WebhookReceiptAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "provider", "event_id", "agency", "outcome", "tracking_number"]
    list_filter = ["provider", "outcome"]
    search_fields = ["event_id", "tracking_number"]
    date_hierarchy = "received_at"
