"""After-sales endpoints: thin adapters — parse, one service or selector call, render.

Every read starts from the scoping gate (a foreign or ungranted ticket is the same 404); every change goes
through the service that owns it (``aftersales.services`` and friends), which locks the ticket, checks the
caller's store permission (403 ``ERR_PERM_…``) and the state table (409 ``ERR_STATE_…``) and writes the
operation-log row. Refusals are rendered by ``config.api.exception_handler`` in the one envelope.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from aftersales import evidence as evidence_service
from aftersales import replies, selectors, services
from aftersales.api import serializers as s
from aftersales.api.filters import ORDERINGS, TicketFilter
from aftersales.api.pagination import KeysetPagination, Ordering
from aftersales.api.selectors import default_approval, ticket_for_actor, ticket_queue, ticket_ref
from aftersales.models import OperationLog
from aftersales.oplog import Performer
from aftersales.tiktok import outbox
from config.api import CursorPagination
from stores.api.base import TenantAPIView, get_actor
from stores.api.idempotency import IDEMPOTENCY_CODES, IDEMPOTENCY_PARAMETER, idempotent
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc

TAG = "aftersales"


IDEMPOTENCY_DOC = ("\n\nAccepts an `Idempotency-Key` header (money-moving write): the same key and body return the "
                   "first result (header `Idempotent-Replayed: true`) instead of acting twice.")


def action_schema(summary: str, description: str, request, response, codes: tuple[str, ...], *,
                  ok: int = 200, keyed: bool = False, examples: dict[str, dict] | None = None):
    codes = (*WRITE_AUTH, "ERR_NOT_FOUND", *codes, *(IDEMPOTENCY_CODES if keyed else ()))
    return extend_schema(tags=[TAG], summary=summary,
                         description=description + (IDEMPOTENCY_DOC if keyed else "") + errors_doc(*codes),
                         request=request, responses={ok: response, **error_responses(*codes)},
                         parameters=[IDEMPOTENCY_PARAMETER] if keyed else None,
                         examples=[OpenApiExample(name, value=value, request_only=True)
                                   for name, value in (examples or {}).items()] or None)


# --- rendering -----------------------------------------------------------------------------------------
def render_ticket(request, ticket_id) -> dict:
    """The ticket as its detail shows it, for this caller (allowed_actions depend on state × role)."""
    actor = get_actor(request)
    ticket = ticket_for_actor(actor, ticket_id)
    context = {
        "request": request,
        "now": timezone.now(),
        "fees": selectors.fees(ticket),
        "evidence": list(evidence_service.evidence_for_actor(actor, ticket)),
        "reject_reasons": services.reject_reasons(ticket),
        "allowed_actions": selectors.allowed_actions(actor, ticket),
        "platform_decision": outbox.latest_for([ticket.pk]).get(ticket.pk),
    }
    return s.TicketDetailSerializer(ticket, context=context).data


def parse(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def performer(request) -> Performer:
    return Performer.of(get_actor(request))


# --- the queue -----------------------------------------------------------------------------------------
# The platform's payloads the list never shows: not read, not sent, not decoded (half a page's time at scale).
LIST_DEFERRED = ("raw", "seller_next_actions", "reject_reasons", "platform_records", "platform_eligibility")


class TicketPagination(KeysetPagination):
    orderings = {name: Ordering(name.lstrip("-"), descending=name.startswith("-")) for name in ORDERINGS}
    default_ordering = "due_at"


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="List after-sales requests",
    description=("Requests the caller may see (their agency; sub-accounts: the stores they are granted), "
                 "soonest deadline first. Filters combine with AND. Cursor-paginated: follow `next`; "
                 "`page_size` up to 200." + errors_doc(*AUTH, "ERR_VALIDATION")),
    responses={200: s.TicketListSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class TicketListView(TenantAPIView, generics.ListAPIView):
    serializer_class = s.TicketListSerializer
    filterset_class = TicketFilter
    pagination_class = TicketPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return ticket_queue(None)
        return ticket_queue(get_actor(self.request), stores_first=True).defer(*LIST_DEFERRED)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}


class TicketDetailView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="One after-sales request",
        description=("Items, amounts, fees, deadlines, evidence, the return shipment and `allowed_actions`: the "
                     "actions this caller may take now (state × role)." + errors_doc(*AUTH, "ERR_NOT_FOUND")),
        responses={200: s.TicketDetailSerializer, **error_responses(*AUTH, "ERR_NOT_FOUND")},
    )
    def get(self, request, ticket_id):
        return Response(render_ticket(request, ticket_id))


class LogPagination(CursorPagination):
    ordering = "id"


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Operation log of a request",
    description=("Every action on the request, refusals included (with their error code), oldest first. "
                 "Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND")),
    responses={200: s.LogEntrySerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND")},
))
class TicketLogView(TenantAPIView, generics.ListAPIView):
    serializer_class = s.LogEntrySerializer
    pagination_class = LogPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return OperationLog.objects.none()
        # The log is not a tenant model of its own: it is scoped through its ticket (404 when not visible).
        return selectors.timeline(ticket_ref(get_actor(self.request), self.kwargs["ticket_id"]))


# --- actions -------------------------------------------------------------------------------------------
STATE = ("ERR_STATE_001", "ERR_STATE_002")


class TicketActionView(TenantAPIView):
    """A state change: the service call, then the ticket as it is now (with its new allowed_actions).

    Each subclass defines ``act(who, ticket_id, data)``: the one service call of its action."""

    input_serializer: type = s.CommentInputSerializer
    act: Callable[[Performer, str, dict], None]

    def post(self, request, ticket_id):
        self.act(performer(request), str(ticket_id), parse(self.input_serializer, request))
        return Response(render_ticket(request, ticket_id))


@extend_schema_view(post=action_schema(
    "Approve", "同意: approve the request. `decision` picks among the approvals `allowed_actions` lists "
               "(`approve:<DECISION>`); without it the plain approval for the request's type and state is used. "
               "`OFFER_PARTIAL_REFUND` needs `partial_refund`.",
    s.ApproveInputSerializer, s.TicketDetailSerializer,
    ("ERR_VALIDATION", "ERR_PERM_001", *STATE, "ERR_REFUND_001", "ERR_REFUND_002", "ERR_TTS_009"), keyed=True,
    examples={"The plain approval": {},
              "A partial refund offer": {"decision": "OFFER_PARTIAL_REFUND",
                                         "partial_refund": {"amount": "5.00", "currency": "GBP"}}}))
class ApproveView(TicketActionView):
    input_serializer = s.ApproveInputSerializer
    post = idempotent(TicketActionView.post)

    def act(self, who, ticket_id, data):
        decision = data.get("decision") or default_approval(ticket_ref(who.actor, ticket_id))
        amount, currency = data.get("partial_refund") or (None, None)
        services.approve(who, ticket_id, decision, partial_refund=amount, currency=currency,
                         buyer_keep_item=data["buyer_keep_item"])


@extend_schema_view(post=action_schema(
    "Reject", "拒绝: reject with one of the request's `reject_reasons` (by name) and an optional comment and "
              "seller evidence ids.",
    s.RejectInputSerializer, s.TicketDetailSerializer,
    ("ERR_VALIDATION", "ERR_REVIEW_001", "ERR_PERM_001", *STATE, "ERR_TTS_009"),
    examples={"With a reason and a comment": {"reason": "reverse_reject_request_reason_3",
                                              "comment": "The label shows the item was used."}}))
class RejectView(TicketActionView):
    input_serializer = s.RejectInputSerializer

    def act(self, who, ticket_id, data):
        services.reject(who, ticket_id, reason=data["reason"], comment=data["comment"], images=data["images"],
                        decision=data.get("decision"))


@extend_schema_view(post=action_schema(
    "Refund", "退款: refund an approved request. Without `amount` everything still refundable is refunded; "
              "less is a partial refund. Needs the refund permission as well as after-sales handling.",
    s.RefundInputSerializer, s.TicketDetailSerializer,
    ("ERR_VALIDATION", "ERR_REFUND_001", "ERR_REFUND_002", "ERR_PERM_001", "ERR_PERM_002", *STATE), keyed=True,
    examples={"Everything still refundable": {}, "A partial refund": {"amount": "12.50"}}))
class RefundView(TicketActionView):
    input_serializer = s.RefundInputSerializer
    post = idempotent(TicketActionView.post)

    def act(self, who, ticket_id, data):
        amount, currency = data.get("amount") or (None, None)
        services.refund(who, ticket_id, amount=amount, currency=currency)


@extend_schema_view(post=action_schema(
    "Request evidence", "要求补充凭证: ask the buyer for more evidence; the request waits for the buyer.",
    s.MessageInputSerializer, s.TicketDetailSerializer, ("ERR_VALIDATION", "ERR_PERM_001", *STATE)))
class RequestEvidenceView(TicketActionView):
    input_serializer = s.MessageInputSerializer

    def act(self, who, ticket_id, data):
        services.request_evidence(who, ticket_id, message=data["message"])


@extend_schema_view(post=action_schema(
    "Close", "关闭: close a request that waits for the buyer, was rejected or whose replacement has shipped.",
    s.CommentInputSerializer, s.TicketDetailSerializer, ("ERR_VALIDATION", "ERR_PERM_001", *STATE)))
class CloseView(TicketActionView):
    input_serializer = s.CommentInputSerializer

    def act(self, who, ticket_id, data):
        services.close(who, ticket_id, comment=data["comment"])


@extend_schema_view(post=action_schema(
    "Escalate", "升级: flag the request for a senior's review — the \"review_failed\" alert with key \"escalated\", as "
                "an auto-rule's escalate does — with an optional note. The state does not change; a person's first "
                "action counts as the first human response. Open requests only.",
    s.EscalateInputSerializer, s.TicketDetailSerializer, ("ERR_VALIDATION", "ERR_PERM_001", "ERR_STATE_001")))
class EscalateView(TicketActionView):
    input_serializer = s.EscalateInputSerializer

    def act(self, who, ticket_id, data):
        services.escalate(who, ticket_id, note=data["note"])


@extend_schema_view(post=action_schema(
    "Ship the replacement", "换货发货: an approved exchange's replacement parcel was sent (carrier and number).",
    s.ShipReplacementInputSerializer, s.TicketDetailSerializer,
    ("ERR_VALIDATION", "ERR_LOG_204", "ERR_PERM_001", *STATE)))
class ShipReplacementView(TicketActionView):
    input_serializer = s.ShipReplacementInputSerializer

    def act(self, who, ticket_id, data):
        services.ship_replacement(who, ticket_id, carrier=data["carrier"], tracking_number=data["tracking_number"])


EVIDENCE_CODES = ("ERR_VALIDATION", "ERR_UNSUPPORTED_MEDIA_TYPE", "ERR_EVID_001", "ERR_EVID_002", "ERR_EVID_003",
                  "ERR_EVID_004", "ERR_PERM_001")


class EvidenceUploadView(TenantAPIView):
    parser_classes = [MultiPartParser, FormParser]

    @action_schema("Upload evidence", "上传凭证: one image (multipart/form-data, field `file`) attached to the "
                                      "request as seller evidence. The type is read from the bytes.",
                   s.EvidenceInputSerializer, s.EvidenceSerializer, EVIDENCE_CODES, ok=201)
    def post(self, request, ticket_id):
        data = parse(s.EvidenceInputSerializer, request)
        item = evidence_service.upload_evidence(performer(request), str(ticket_id), data["file"], note=data["note"])
        return Response(s.EvidenceSerializer(item, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ReplyView(TenantAPIView):
    @action_schema("Reply to the buyer", "回复买家: a quick reply (`reply_id`, rendered for this request) or free "
                                         "`text`. The platform's sensitive-word check runs first: a hit is refused "
                                         "with ERR_REPLY_001 and the words in `error.fields.text`.",
                   s.ReplyInputSerializer, s.ReplyResultSerializer,
                   ("ERR_VALIDATION", "ERR_REPLY_001", "ERR_REPLY_002", "ERR_PERM_001"))
    def post(self, request, ticket_id):
        data = parse(s.ReplyInputSerializer, request)
        text = replies.send_reply(performer(request), str(ticket_id), reply_id=data.get("reply_id"),
                                  text=data.get("text"))
        return Response(s.ReplyResultSerializer({"text": text, "sensitive_words": []}).data)


# --- batch review --------------------------------------------------------------------------------------
BULK_CODES = (*WRITE_AUTH, "ERR_VALIDATION", "ERR_BULK_001", "ERR_BULK_002", *IDEMPOTENCY_CODES)


class BulkView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="Batch review (批量审核)",
        description=("Approve, reject, request evidence or close many requests, across stores. Each id has its "
                     "own result, exactly as the single action would give it: partial failures never roll back the "
                     "others, and an id the database refuses fails alone (ERR_INTERNAL). Ids listed twice act once. "
                     "A request the caller may not see fails with ERR_NOT_FOUND like a missing one."
                     + IDEMPOTENCY_DOC + errors_doc(*BULK_CODES)
                     + "\n\nPer-item errors: any code of the single action (ERR_NOT_FOUND, ERR_PERM_001, "
                       "ERR_STATE_001, ERR_STATE_002, ERR_REVIEW_001, ERR_REFUND_00x, ERR_TTS_009, ERR_VALIDATION, "
                       "ERR_INTERNAL)."),
        request=s.BulkInputSerializer,
        responses={200: s.BulkResultSerializer, **error_responses(*BULK_CODES)},
        examples=[OpenApiExample("Approve three", request_only=True, value={
            "action": "approve", "ids": ["0b9e7a52-3d4f-4a1e-9a57-6f1c2d3e4f50", "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
                                        "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"]}),
                  OpenApiExample("One of three refused", response_only=True, status_codes=["200"], value={
            "results": [{"id": "0b9e7a52-3d4f-4a1e-9a57-6f1c2d3e4f50", "ok": True, "error": None},
                        {"id": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "ok": False,
                         "error": {"code": "ERR_STATE_001", "message": "This action is not possible in the "
                                   "request's current state."}},
                        {"id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "ok": True, "error": None}],
            "succeeded": 2, "failed": 1})],
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request):
        serializer = s.BulkInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.params()
        action, ids = data.pop("action"), data.pop("ids")
        results = services.bulk(performer(request), action, ids, data)
        ok = sum(1 for r in results if r["ok"])
        return Response(s.BulkResultSerializer({"results": results, "succeeded": ok,
                                                "failed": len(results) - ok}).data)
