"""Quick replies (售后话术库), the sensitive-word check, buyer history (买家售后行为画像) and the analytics
summary (售后分析): thin adapters over ``aftersales.replies``, ``aftersales.buyers`` and
``aftersales.analytics``, with the conventions of ``aftersales.api.views`` (scoped 404, coded 403, one
envelope, cursor pages)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response

from aftersales import analytics, buyers, replies, volumes
from aftersales.api import resource_serializers as rs
from aftersales.api.views import LogPagination, parse
from aftersales.models import QuickReply
from stores import errors
from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc
from stores.errors import AppError
from stores.models import Market, Store

REPLIES_TAG = "quick replies"
BUYERS_TAG = "buyers"
ANALYTICS_TAG = "analytics"


def parse_query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def reply_for_actor(actor, reply_id) -> QuickReply:
    reply = QuickReply.objects.for_actor(actor).by_id(str(reply_id)).select_related("store").first()
    if reply is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return reply


class ReplyPagination(LogPagination):
    ordering = ("position", "id")


# --- quick replies ---------------------------------------------------------------------------------------
REPLY_WRITE = ("ERR_VALIDATION", "ERR_REPLY_001", "ERR_REPLY_002", "ERR_PERM_004")


@extend_schema_view(
    get=extend_schema(
        tags=[REPLIES_TAG], summary="List quick replies",
        description=("Agency-wide replies, plus the given store's (only a store the caller may see). In their "
                     "order (`position`). Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
        parameters=[rs.ReplyListQuerySerializer],
        responses={200: rs.QuickReplySerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
    ),
    post=extend_schema(
        tags=[REPLIES_TAG], summary="Create a quick reply",
        description=("Appended at the end of its list (a store's, or the agency-wide one: owner only). The text is "
                     "checked first: sensitive words → ERR_REPLY_001 with the words in `error.fields.body`; an "
                     "unknown {variable} → ERR_REPLY_002. At most 50 per list (ERR_VALIDATION)."
                     + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", *REPLY_WRITE)),
        request=rs.QuickReplyCreateSerializer,
        responses={201: rs.QuickReplySerializer,
                   **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", *REPLY_WRITE)},
    ),
)
class QuickReplyListView(TenantAPIView, generics.ListAPIView):
    serializer_class = rs.QuickReplySerializer
    pagination_class = ReplyPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return QuickReply.objects.for_actor(None)
        store = parse_query(rs.ReplyListQuerySerializer, self.request).get("store")
        return replies.quick_replies_for_actor(get_actor(self.request), store).select_related("store")

    def post(self, request):
        data = parse(rs.QuickReplyCreateSerializer, request)
        store = data.get("store")
        reply = replies.create_quick_reply(get_actor(request), title=data["title"], body=data["body"],
                                           store=None if store is None else str(store))
        return Response(rs.QuickReplySerializer(reply).data, status=status.HTTP_201_CREATED)


class QuickReplyDetailView(TenantAPIView):
    @extend_schema(tags=[REPLIES_TAG], summary="One quick reply",
                   description="A reply the caller may see." + errors_doc(*AUTH, "ERR_NOT_FOUND"),
                   responses={200: rs.QuickReplySerializer, **error_responses(*AUTH, "ERR_NOT_FOUND")})
    def get(self, request, reply_id):
        return Response(rs.QuickReplySerializer(reply_for_actor(get_actor(request), reply_id)).data)

    @extend_schema(tags=[REPLIES_TAG], summary="Change a quick reply",
                   description=("Title, text or position. A new text is checked again against its store's market "
                                "(agency-wide: every market)." + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND",
                                                                             *REPLY_WRITE)),
                   request=rs.QuickReplyUpdateSerializer,
                   responses={200: rs.QuickReplySerializer,
                              **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", *REPLY_WRITE)})
    def patch(self, request, reply_id):
        data = parse(rs.QuickReplyUpdateSerializer, request)
        reply = replies.update_quick_reply(get_actor(request), str(reply_id), **data)
        return Response(rs.QuickReplySerializer(reply).data)

    @extend_schema(tags=[REPLIES_TAG], summary="Delete a quick reply",
                   description="Needs quick-reply management on its store (agency-wide: owner)."
                               + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_004"),
                   request=None,
                   responses={204: None, **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_004")})
    def delete(self, request, reply_id):
        replies.delete_quick_reply(get_actor(request), str(reply_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReplyCheckView(TenantAPIView):
    @extend_schema(
        tags=[REPLIES_TAG], summary="Check a text for sensitive words (敏感词检测)",
        description=("Runs the platform's sensitive-word check on `text` without saving or sending anything: with "
                     "a store's market's words (`store`), a market's (`market`), or every market's (neither). "
                     "Always 200: the words found are the result." + errors_doc(*WRITE_AUTH, "ERR_VALIDATION",
                                                                                "ERR_NOT_FOUND")),
        request=rs.TextCheckInputSerializer,
        responses={200: rs.TextCheckResultSerializer, **error_responses(*WRITE_AUTH, "ERR_VALIDATION",
                                                                        "ERR_NOT_FOUND")},
    )
    def post(self, request):
        data = parse(rs.TextCheckInputSerializer, request)
        market = (data.get("market") or "").strip().upper() or None
        if "store" in data:
            store = (Store.objects.for_actor(get_actor(request)).by_id(str(data["store"]))
                     .select_related("market").first())
            if store is None:
                raise AppError(errors.ERR_NOT_FOUND)
            market = store.market.code
        elif market is not None and not Market.objects.filter(code=market).exists():
            raise AppError(errors.ERR_VALIDATION, fields={"market": [_("Unknown market.")]})
        words = replies.check_text(data["text"], market, all_markets=market is None)
        return Response(rs.TextCheckResultSerializer({"ok": not words, "words": words, "market": market}).data)


# --- buyer history -----------------------------------------------------------------------------------
class BuyerHistoryView(TenantAPIView):
    @extend_schema(
        tags=[BUYERS_TAG], summary="A buyer's after-sales history (买家售后行为画像)",
        description=("The buyer's requests, refunds and rejections across the stores the caller may see (never "
                     "another agency's), and whether a serial-returner rule holds. Figures from one grouped "
                     "query; amounts per currency." + errors_doc(*AUTH, "ERR_VALIDATION")),
        parameters=[rs.BuyerHistoryQuerySerializer,
                    OpenApiParameter("buyer_id", str, OpenApiParameter.PATH, description="The platform's buyer id.")],
        responses={200: rs.BuyerHistorySerializer, **error_responses(*AUTH, "ERR_VALIDATION")},
    )
    def get(self, request, buyer_id):
        days = parse_query(rs.BuyerHistoryQuerySerializer, request)["days"]
        history = buyers.buyer_history(get_actor(request), buyer_id, days=days)
        return Response(rs.BuyerHistorySerializer(history).data)


# --- analytics ---------------------------------------------------------------------------------------------
class AnalyticsSummaryView(TenantAPIView):
    @extend_schema(
        tags=[ANALYTICS_TAG], summary="After-sales summary (售后分析)",
        description=("For the last 7 or 30 days, over one store or every store the caller may view analytics of: "
                     "return rate against category benchmarks (units asked back ÷ units sold, from the order volume "
                     "sent to /analytics/order-volumes/; null without it), proactive refund rate (主动退款率), "
                     "platform intervention rate (平台介入率), average handling hours, the share completed within "
                     "72 h and the top 3 reasons. Definitions: docs/ARCHITECTURE.md → API resources. Needs "
                     "“View analytics” on the store (ERR_PERM_005)."
                     + errors_doc(*AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_005")),
        parameters=[rs.SummaryQuerySerializer],
        responses={200: rs.SummarySerializer,
                   **error_responses(*AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_005")},
    )
    def get(self, request):
        data = parse_query(rs.SummaryQuerySerializer, request)
        store = data.get("store")
        result = analytics.summary(get_actor(request), days=data["days"],
                                   store=None if store is None else str(store))
        return Response(rs.SummarySerializer(result).data)


class OrderVolumeView(TenantAPIView):
    @extend_schema(
        tags=[ANALYTICS_TAG], summary="Send order volume (units sold)",
        description=("Units sold (and orders) per market-local day and line-item category for one store: the "
                     "return rate's denominator, which the platform sync does not provide yet. Each (day, "
                     "category) row replaces the one held; up to 1,000 rows a call, all or nothing. Category "
                     "empty = the store's total (send totals or categories, not both). Needs “View analytics” "
                     "on the store." + errors_doc(*WRITE_AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_005")),
        request=rs.OrderVolumeInputSerializer,
        responses={200: rs.OrderVolumeResultSerializer,
                   **error_responses(*WRITE_AUTH, "ERR_VALIDATION", "ERR_NOT_FOUND", "ERR_PERM_005")},
        examples=[OpenApiExample("Two days of apparel", request_only=True, value={
            "store": "0b9e7a52-3d4f-4a1e-9a57-6f1c2d3e4f50",
            "rows": [{"date": "2026-11-24", "category": "apparel", "units_sold": 412, "orders": 380},
                     {"date": "2026-11-25", "category": "apparel", "units_sold": 398, "orders": 371}]})],
    )
    def post(self, request):
        data = parse(rs.OrderVolumeInputSerializer, request)
        saved = volumes.record(get_actor(request), data["store"], [dict(row) for row in data["rows"]])
        return Response(rs.OrderVolumeResultSerializer({"saved": saved}).data)
