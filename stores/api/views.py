import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, error_responses, errors_doc
from stores.api.serializers import ErrorCodeSerializer, StoreSerializer
from stores.errors import CATALOGUE
from stores.models import Store
from stores.selectors import stores_for_actor


class StoreFilter(django_filters.FilterSet):
    market = django_filters.CharFilter(field_name="market__code", lookup_expr="iexact")

    class Meta:
        model = Store
        fields = ["market"]


@extend_schema_view(get=extend_schema(
    summary="Stores", description=("Stores the caller may see, with market, currency, time zone, service score and "
                                   "eligibility. Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
    responses={200: StoreSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")}))
class StoreListView(TenantAPIView, generics.ListAPIView):
    """Stores the caller may see, with market, currency, time zone, service score and eligibility."""

    serializer_class = StoreSerializer
    filterset_class = StoreFilter
    ordering = ("name", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return stores_for_actor(None)
        return stores_for_actor(get_actor(self.request))

    def paginate_queryset(self, queryset):
        self.paginator.ordering = self.ordering
        return super().paginate_queryset(queryset)


class ErrorCodeListView(APIView):
    """The error-code catalogue: code, HTTP status, zh-hans and en message, hint. Public."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=ErrorCodeSerializer(many=True))
    def get(self, request):
        rows = []
        for entry in sorted(CATALOGUE.values(), key=lambda e: e.code):
            en, zh = entry.localised("en"), entry.localised("zh-hans")
            rows.append({
                "code": entry.code,
                "http_status": entry.status,
                "message": {"en": en["message"], "zh-hans": zh["message"]},
                "hint": {"en": en["hint"], "zh-hans": zh["hint"]},
            })
        return Response(ErrorCodeSerializer(rows, many=True).data)
