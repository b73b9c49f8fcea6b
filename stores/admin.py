"""Back-office admin. Role changes go through the services so guardian rows stay in step."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from guardian.admin import GuardedModelAdmin

from stores import services
from stores.errors import AppError
from stores.models import (
    BUSINESS_HOURS_KINDS,
    Agency,
    ApiToken,
    BusinessCalendar,
    Market,
    MarketPolicy,
    Membership,
    Role,
    RoleAssignment,
    Store,
)


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "currency", "time_zone", "region", "is_open"]
    list_editable = ["is_open"]


@admin.register(Agency)
class AgencyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.ensure_role_templates(obj)


@admin.register(Store)
class StoreAdmin(GuardedModelAdmin):
    list_display = ["name", "agency", "market", "shop_id", "service_score", "eligibility"]
    list_filter = ["market", "agency"]
    search_fields = ["name", "shop_id"]
    list_select_related = ["agency", "market"]
    readonly_fields = ["public_id", "created_at"]

    @admin.display(description=_("eligibility"))
    def eligibility(self, obj):
        return Store.Eligibility(obj.eligibility).label


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "agency", "kind", "created_at"]
    list_filter = ["kind", "agency"]
    search_fields = ["user__username", "agency__name"]
    autocomplete_fields = ["user"]


class RoleAssignmentInline(admin.TabularInline):
    model = RoleAssignment
    extra = 0
    fields = ["membership", "store", "created_at"]
    readonly_fields = ["membership", "store", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        # Assignments are added through the RoleAssignment admin so guardian rows follow.
        return False


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "agency", "slug", "is_template"]
    list_filter = ["agency", "is_template"]
    inlines = [RoleAssignmentInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:
            # Re-derive every holder's guardian rows from the new permission set.
            services.set_role_permissions(actor=None, role=obj, permissions=obj.permissions)


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    list_display = ["membership", "role", "store", "created_at"]
    list_filter = ["role", "agency"]
    fields = ["membership", "role", "store"]
    list_select_related = ["membership__user", "role", "store__market"]

    def has_change_permission(self, request, obj=None):
        # An assignment is granted or revoked, never edited in place.
        return False

    def save_model(self, request, obj, form, change):
        try:
            services.assign_role(actor=None, membership=obj.membership, role=obj.role, stores=[obj.store])
        except AppError as exc:
            self.message_user(request, f"{exc.code}: {exc.error.message}", messages.ERROR)

    def delete_model(self, request, obj):
        services.revoke_role(actor=None, membership=obj.membership, role=obj.role, stores=[obj.store])

    def delete_queryset(self, request, queryset):
        for assignment in queryset.select_related("membership", "role", "store"):
            self.delete_model(request, assignment)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "agency", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["agency"]
    readonly_fields = ["public_id", "prefix", "user", "agency", "created_at", "last_used_at"]
    fields = ["public_id", "name", "prefix", "user", "agency", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A key is shown once at creation: create it with the command or in the portal.
        return False

    @admin.action(description=_("Revoke selected tokens"))
    def revoke(self, request, queryset):
        count = services.revoke_api_tokens(queryset)
        self.message_user(request, _("%(count)d token(s) revoked.") % {"count": count})


class MarketPolicyForm(forms.ModelForm):
    # Ticked boxes instead of raw JSON; the platform's own deadline is not offered (the model refuses it too).
    business_hours_kinds = forms.MultipleChoiceField(
        label=_("deadlines counted in business hours"), required=False, widget=forms.CheckboxSelectMultiple,
        choices=list(BUSINESS_HOURS_KINDS.items()), help_text=MarketPolicy._meta.get_field(
            "business_hours_kinds").help_text)

    class Meta:
        model = MarketPolicy
        fields = ["market", "commission_rate", "return_shipping_payer", "business_hours_kinds", "source"]


@admin.register(MarketPolicy)
class MarketPolicyAdmin(admin.ModelAdmin):
    """After-sales rules per market, as data: seeded by a migration, edited here."""

    form = MarketPolicyForm
    list_display = ["market", "commission_rate", "return_shipping_payer", "counted_in_business_hours", "source"]
    list_select_related = ["market"]
    list_filter = ["return_shipping_payer"]
    ordering = ["market__code"]
    fields = ["market", "commission_rate", "return_shipping_payer", "business_hours_kinds", "source"]

    @admin.display(description=_("counted in business hours"))
    def counted_in_business_hours(self, obj):
        return ", ".join(str(BUSINESS_HOURS_KINDS.get(k, k)) for k in obj.business_hours_kinds or []) or "—"

    def get_readonly_fields(self, request, obj=None):
        # A policy belongs to its market for good; a new market's policy is added with its market.
        return ["market"] if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False  # a market without a policy would silently fall back to zero commission


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    """Working hours and holidays per market; used only for the deadlines a market policy lists (none as seeded)."""

    list_display = ["market", "time_zone", "weekly_hours", "holiday_count", "counted_in_business_hours", "source"]
    list_select_related = ["market", "market__policy"]
    ordering = ["market__code"]
    fields = ["market", "time_zone", "working_hours", "holidays", "weekly_hours", "counted_in_business_hours",
              "source"]
    readonly_fields = ["weekly_hours", "counted_in_business_hours"]

    def get_readonly_fields(self, request, obj=None):
        # A calendar belongs to its market for good (one per market).
        return [*self.readonly_fields, "market"] if obj is not None else self.readonly_fields

    @admin.display(description=_("working hours per week"))
    def weekly_hours(self, obj):
        try:
            hours = obj.as_calendar().week_us / 3_600_000_000
        except Exception:  # an unsaved or invalid calendar: the form shows the coded error
            return "—"
        return f"{hours:g}"

    @admin.display(description=_("holidays"))
    def holiday_count(self, obj):
        return len(obj.holidays or [])

    @admin.display(description=_("counted in business hours"))
    def counted_in_business_hours(self, obj):
        try:
            kinds = obj.market.policy.business_hours_kinds or []
        except (AttributeError, MarketPolicy.DoesNotExist):
            kinds = []
        return ", ".join(str(BUSINESS_HOURS_KINDS.get(k, k)) for k in kinds) or _("none (wall clock)")
