"""Input and output shapes of the after-sales API. No rules here: inputs are parsed, then a service decides.

Output conventions (shared/API.md): public ids only, times ISO 8601 with offset (UTC), money as
``{"amount": "12.50", "currency": "GBP"}`` with a string amount.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aftersales import sla
from aftersales.models import Evidence
from aftersales.states import Decision, RequestType, State

CENT = Decimal("0.01")


def money(amount, currency: str) -> dict | None:
    if amount is None:
        return None
    return {"amount": str(Decimal(amount).quantize(CENT)), "currency": currency}


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with an explicit offset (+00:00), never a bare or "Z" time."""
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


# --- shared pieces ---------------------------------------------------------------------------------
class MoneySerializer(serializers.Serializer):
    amount = serializers.CharField(help_text=("Decimal string, two places."))
    currency = serializers.CharField(help_text=("ISO 4217 code."))


class IsoDateTimeField(serializers.DateTimeField):
    """Times out as ISO 8601 with +00:00 (stored in UTC)."""

    def to_representation(self, value):
        return iso(value)


class MoneyField(serializers.Field):
    """A money attribute of the ticket in the ticket's currency."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return money(super().get_attribute(instance), instance.currency)

    def to_representation(self, value):
        return value


extend_schema_field(MoneySerializer)(MoneyField)


class MarketRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    currency = serializers.CharField()
    time_zone = serializers.CharField()


class StoreRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    market = MarketRefSerializer()


class BuyerSerializer(serializers.Serializer):
    id = serializers.CharField(source="buyer_user_id")
    name = serializers.CharField(source="buyer_name")


class ReasonSerializer(serializers.Serializer):
    key = serializers.CharField(source="reason_key")
    text = serializers.CharField(source="reason_text")


class DeadlineSerializer(serializers.Serializer):
    """The watched deadline (the earliest still open) and how long is left."""

    due_at = IsoDateTimeField(allow_null=True)
    due_kind = serializers.CharField(allow_blank=True, help_text=(
        "first_response, auto_approve, replacement_response or platform; empty when nothing is watched."))
    breached_at = IsoDateTimeField(allow_null=True, help_text=("When a deadline was first missed."))
    seconds_left = serializers.SerializerMethodField(help_text=(
        "Seconds until due_at, negative once passed; null when nothing is watched."))

    def get_seconds_left(self, ticket) -> int | None:
        left = sla.time_left(ticket, self.context.get("now") or timezone.now())
        return None if left is None else int(left.total_seconds())


# --- the list ------------------------------------------------------------------------------------------
class TicketListSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    store = StoreRefSerializer()
    type = serializers.ChoiceField(choices=RequestType.choices)
    status = serializers.ChoiceField(source="state", choices=State.choices, help_text=("Normalised status."))
    platform_status = serializers.CharField(help_text=("return_status as the platform sent it."))
    return_id = serializers.CharField()
    order_id = serializers.CharField()
    buyer = BuyerSerializer(source="*")
    reason = ReasonSerializer(source="*")
    refund_total = MoneyField()
    refunded = MoneyField(source="refunded_amount")
    refundable = MoneyField()
    deadline = DeadlineSerializer(source="*")
    stalled_at = IsoDateTimeField(allow_null=True, help_text=("Set while the return parcel is stalled (物流断链)."))
    assigned_to = serializers.CharField(source="assignee_username", allow_null=True,
                                        help_text=("Username of the member working on it."))
    tags = serializers.ListField(child=serializers.CharField())
    tracking_number = serializers.CharField(source="return_tracking_number", allow_null=True,
                                            help_text=("The return parcel's tracking number."))
    platform_created_at = IsoDateTimeField(allow_null=True)
    created_at = IsoDateTimeField()
    updated_at = IsoDateTimeField()
    state_changed_at = IsoDateTimeField()


# --- the detail ----------------------------------------------------------------------------------------
class LineItemSerializer(serializers.Serializer):
    line_item_id = serializers.CharField()
    order_line_item_id = serializers.CharField()
    sku_id = serializers.CharField()
    seller_sku = serializers.CharField()
    sku_name = serializers.CharField()
    product_name = serializers.CharField()
    category = serializers.CharField()
    quantity = serializers.IntegerField()
    refund_amount = serializers.SerializerMethodField()

    @extend_schema_field(MoneySerializer)
    def get_refund_amount(self, item) -> dict:
        return money(item.refund_amount, self.context["currency"])


class AmountsSerializer(serializers.Serializer):
    refund_total = MoneyField()
    refund_subtotal = MoneyField()
    refund_shipping_fee = MoneyField()
    refund_tax = MoneyField()
    refunded = MoneyField(source="refunded_amount")
    refundable = MoneyField()
    partial_refund_offer = MoneyField(allow_null=True, help_text=("A partial refund offered to the buyer."))


class FeesSerializer(serializers.Serializer):
    commission_rate = serializers.DecimalField(max_digits=5, decimal_places=4)
    commission_returned = MoneySerializer()
    commission_is_estimate = serializers.BooleanField(help_text=("True before any refund: an estimate on the "
                                                                  "refundable total."))
    return_shipping_payer = serializers.CharField()
    return_shipping_payer_label = serializers.CharField()
    platform_shipping_fees = serializers.DictField(help_text=("Shipping fees as the platform sent them."))

    def to_representation(self, fees):
        data = dict(fees)
        data["commission_returned"] = money(fees["commission_returned"], fees["currency"])
        return super().to_representation(data)


class EvidenceSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    role = serializers.ChoiceField(choices=Evidence.Role.choices)
    kind = serializers.ChoiceField(choices=Evidence.Kind.choices)
    content_type = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    size = serializers.IntegerField(allow_null=True)
    note = serializers.CharField()
    url = serializers.SerializerMethodField(help_text=(
        "Images: the download address (served through the scoping gate, signed-in portal session); "
        "videos: the link as sent."))
    cover_url = serializers.CharField()
    duration_millis = serializers.IntegerField(allow_null=True)
    created_at = IsoDateTimeField()

    def get_url(self, evidence) -> str | None:
        if evidence.kind == Evidence.Kind.VIDEO:
            return evidence.url or None
        if not evidence.file:
            return evidence.url or None  # a platform image that could not be downloaded: its link as sent
        path = reverse("portal:evidence_file", kwargs={"evidence_id": evidence.public_id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class CarrierRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class ShipmentSerializer(serializers.Serializer):
    """The buyer's return parcel (logistics), as far as the request's page shows it."""

    id = serializers.UUIDField(source="public_id")
    carrier = CarrierRefSerializer(allow_null=True)
    tracking_number = serializers.CharField()
    status = serializers.CharField()
    status_at = IsoDateTimeField(allow_null=True)
    format_check = serializers.CharField(help_text=("verified or unverified (the carrier has no known format)."))
    validation = serializers.CharField(help_text=("The carrier check: pending, valid, invalid or failed."))
    registered_at = IsoDateTimeField()
    first_scan_at = IsoDateTimeField(allow_null=True)
    scan_due_at = IsoDateTimeField(allow_null=True, help_text=("The first carrier scan is due by then."))
    stalled_at = IsoDateTimeField(allow_null=True)


class RejectReasonSerializer(serializers.Serializer):
    name = serializers.CharField()
    text = serializers.CharField()


class PlatformDecisionSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    decision = serializers.CharField()
    status = serializers.CharField(help_text=(
        "sending: queued or being retried; confirmed: TikTok Shop accepted it; failed: refused or out of retries "
        "(see error_code and platform_code)."))
    error_code = serializers.CharField(help_text="Our catalogue code of the last failure (ERR_TTS_…).")
    platform_code = serializers.IntegerField(allow_null=True, help_text="The platform's own code, kept as sent.")
    message = serializers.CharField()
    attempts = serializers.IntegerField()
    created_at = IsoDateTimeField()
    confirmed_at = IsoDateTimeField(allow_null=True)


class PlatformRecordSerializer(serializers.Serializer):
    role = serializers.CharField(default="")
    description = serializers.CharField(default="")
    reason_text = serializers.CharField(default="")
    note = serializers.CharField(default="")
    create_time = serializers.IntegerField(allow_null=True, default=None)


class TicketDetailSerializer(TicketListSerializer):
    arbitration_status = serializers.CharField()
    initiator_role = serializers.CharField()
    platform_status_unknown = serializers.BooleanField()
    shipment_type = serializers.CharField()
    handover_method = serializers.CharField()
    return_method = serializers.CharField()
    can_buyer_keep_item = serializers.BooleanField()
    is_quick_refund = serializers.BooleanField()
    exempt_category = serializers.CharField(help_text=("Set when a no-reason return hits an exempt category."))
    first_human_response_at = IsoDateTimeField(allow_null=True)
    replacement_tracking_number = serializers.CharField()
    items = serializers.SerializerMethodField()
    amounts = AmountsSerializer(source="*")
    fees = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()
    shipment = serializers.SerializerMethodField()
    reject_reasons = serializers.SerializerMethodField()
    platform_decision = serializers.SerializerMethodField(help_text=(
        "For stores connected to TikTok Shop: the last decision sent to the platform and where it stands; null "
        "when none was sent."))
    platform_timeline = serializers.SerializerMethodField(help_text=(
        "The platform's own record of the request (Get Return Records), oldest first; evidence is under evidence."))
    allowed_actions = serializers.SerializerMethodField(help_text=(
        "What this caller may do now (state × role), e.g. approve:APPROVE_REFUND, reject:REJECT_RETURN, "
        "request_evidence, refund, ship_replacement, close, escalate. POST the part before the colon (underscores as "
        "hyphens) with the part after it as decision."))

    @extend_schema_field(LineItemSerializer(many=True))
    def get_items(self, ticket):
        return LineItemSerializer(ticket.items.all(), many=True, context={"currency": ticket.currency}).data

    @extend_schema_field(FeesSerializer)
    def get_fees(self, ticket):
        return FeesSerializer(self.context["fees"]).data

    @extend_schema_field(EvidenceSerializer(many=True))
    def get_evidence(self, ticket):
        return EvidenceSerializer(self.context["evidence"], many=True, context=self.context).data

    @extend_schema_field(ShipmentSerializer(allow_null=True))
    def get_shipment(self, ticket):
        shipment = getattr(ticket, "return_shipment", None)  # a missing reverse one-to-one raises AttributeError
        return ShipmentSerializer(shipment).data if shipment is not None else None

    @extend_schema_field(RejectReasonSerializer(many=True))
    def get_reject_reasons(self, ticket):
        return RejectReasonSerializer(self.context["reject_reasons"], many=True).data

    def get_allowed_actions(self, ticket) -> list[str]:
        return self.context["allowed_actions"]

    @extend_schema_field(PlatformDecisionSerializer(allow_null=True))
    def get_platform_decision(self, ticket):
        decision = self.context.get("platform_decision")
        return PlatformDecisionSerializer(decision).data if decision is not None else None

    @extend_schema_field(PlatformRecordSerializer(many=True))
    def get_platform_timeline(self, ticket):
        records = [r for r in ticket.platform_records or [] if isinstance(r, dict)]
        return PlatformRecordSerializer(records, many=True).data


# --- the operation log ---------------------------------------------------------------------------------
class LogEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text=("Position in the log (ascending); not a resource id."))
    created_at = IsoDateTimeField()
    actor_kind = serializers.CharField(help_text=("buyer, owner, sub_account, platform, system or rule."))
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField()
    state_before = serializers.CharField()
    state_after = serializers.CharField()
    ok = serializers.BooleanField()
    error_code = serializers.CharField(help_text=("Empty when the action succeeded."))
    message = serializers.CharField()
    payload = serializers.JSONField()
    request_id = serializers.CharField()


# --- inputs --------------------------------------------------------------------------------------------
class MoneyInputField(serializers.Field):
    """``"12.50"`` (the request's currency) or ``{"amount": "12.50", "currency": "GBP"}``.

    Only the shape is checked here; the amount itself is the service's to judge (ERR_REFUND_00x)."""

    default_error_messages = {"invalid": _("Send a decimal string such as “12.50”, or an object with amount and "
                                           "currency.")}

    def to_internal_value(self, data):
        if isinstance(data, dict):
            amount, currency = data.get("amount"), data.get("currency")
            if not isinstance(amount, str | int | float) or isinstance(amount, bool) or (
                    currency is not None and not isinstance(currency, str)):
                self.fail("invalid")
            return str(amount), (currency.upper() if currency else None)
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            return str(data), None
        self.fail("invalid")

    def to_representation(self, value):
        amount, currency = value
        return {"amount": amount, "currency": currency}


extend_schema_field({"oneOf": [{"type": "string", "example": "12.50"},
                               {"$ref": "#/components/schemas/Money"}]})(MoneyInputField)

# One choice set for approve and reject (the services refuse a decision of the other kind with ERR_VALIDATION).
DECISIONS = Decision.choices


class ApproveInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DECISIONS, required=False, help_text=(
        "Default: the plain approval the request's type and state offer (APPROVE_REFUND, APPROVE_RETURN, "
        "APPROVE_RECEIVED_PACKAGE or APPROVE_REPLACEMENT)."))
    partial_refund = MoneyInputField(required=False, help_text=("Required for OFFER_PARTIAL_REFUND."))
    buyer_keep_item = serializers.BooleanField(required=False, default=False, help_text=(
        "With APPROVE_RETURN: refund without the return (DIRECT_REFUND)."))


class RejectInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=160, help_text=("One of the request's reject_reasons (name)."))
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    images = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list,
                                   max_length=20, help_text=("Ids of seller evidence uploaded to this request."))
    decision = serializers.ChoiceField(choices=DECISIONS, required=False, help_text=(
        "Default: the rejection that fits the request's type and state."))


class RefundInputSerializer(serializers.Serializer):
    amount = MoneyInputField(required=False, help_text=(
        "Leave out to refund everything still refundable; less than that is a partial refund."))


class MessageInputSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500,
                                    help_text=("What the buyer should send."))


class CommentInputSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class EscalateInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500, help_text=(
        "Why it needs a senior's look; becomes the alert's message."))


class EvidenceInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=("JPEG, PNG or WebP; size, count and pixel limits apply."))
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class ReplyInputSerializer(serializers.Serializer):
    reply_id = serializers.UUIDField(required=False, help_text=("A quick reply's id (rendered for the request)."))
    text = serializers.CharField(required=False, max_length=2000, trim_whitespace=True,
                                 help_text=("Free text, sent as written. Send reply_id or text, not both."))

    def validate(self, attrs):
        if ("reply_id" in attrs) == ("text" in attrs):
            raise serializers.ValidationError({"text": [_("Send either reply_id or text.")]})
        return attrs


class ReplyResultSerializer(serializers.Serializer):
    text = serializers.CharField(help_text=("The text sent to the buyer."))
    sensitive_words = serializers.ListField(child=serializers.CharField(), help_text=(
        "Always empty on success: a text with sensitive words is refused with ERR_REPLY_001, the words in "
        "error.fields.text."))


class ShipReplacementInputSerializer(serializers.Serializer):
    carrier = serializers.CharField(max_length=32)
    tracking_number = serializers.CharField(max_length=80)


class BulkInputSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=32, help_text=(
        "approve, reject, request-evidence (or request_evidence) or close; others → ERR_BULK_002."))
    ids = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, help_text=(
        "Public ids of the requests, at most 1,000 (ERR_BULK_001); duplicates act once."))
    decision = serializers.ChoiceField(choices=DECISIONS, required=False, help_text=("approve: required."))
    partial_refund = MoneyInputField(required=False)
    buyer_keep_item = serializers.BooleanField(required=False, default=False)
    reason = serializers.CharField(required=False, max_length=160, help_text=("reject: required."))
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)

    def validate(self, attrs):
        action = attrs["action"] = attrs["action"].replace("-", "_")
        if action == "approve" and "decision" not in attrs:
            raise serializers.ValidationError({"decision": [_("Required for approve.")]})
        if action == "reject" and not attrs.get("reason"):
            raise serializers.ValidationError({"reason": [_("Required for reject.")]})
        return attrs

    def params(self) -> dict:
        data = dict(self.validated_data)
        partial = data.pop("partial_refund", None)
        if partial is not None:
            data["partial_refund"], data["currency"] = partial
        return data


class ItemErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class BulkItemSerializer(serializers.Serializer):
    id = serializers.CharField()
    ok = serializers.BooleanField()
    error = ItemErrorSerializer(allow_null=True)


class BulkResultSerializer(serializers.Serializer):
    results = BulkItemSerializer(many=True)
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
