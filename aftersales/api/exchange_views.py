"""ERP exchange: the CSV export of the queue, return-reason imports, batch actions as jobs, and the jobs.

Thin adapters: parse, call ``aftersales.jobs`` / ``aftersales.imports``, render. Jobs are scoped by
``jobs.jobs_for_actor`` (owner: the agency's jobs; sub-account: their own), so another agency's job — or another
sub-account's — is a 404.
"""

from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from aftersales import imports, jobs
from aftersales.api import exchange_serializers as xs
from aftersales.api.filters import TicketFilter
from aftersales.models import Job
from config.api import CursorPagination
from stores import errors
from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc
from stores.errors import AppError

TAG = "exchange"
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def flag(request, name: str, default: bool) -> bool:
    """A boolean query parameter: 1/0, true/false, yes/no; anything else is a validation error."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise AppError(errors.ERR_VALIDATION, fields={name: [str(_("Send true or false."))]})


def accepted(request, job: Job) -> Response:
    """202 with the job (its url to poll in the body and in Location)."""
    data = xs.JobSerializer(job, context={"request": request}).data
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


class FirstRenderer(BaseContentNegotiation):
    """Files are answered whatever the client accepts (``Accept: text/csv`` must not be a 406); errors are JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# --- export ------------------------------------------------------------------------------------------------
EXPORT_CODES = (*AUTH, "ERR_VALIDATION")


class ExportView(TenantAPIView):
    content_negotiation_class = FirstRenderer

    @extend_schema(
        tags=[TAG], summary="Export the queue as CSV",
        description=(
            "The requests the list would show for the same filters and `ordering`, as CSV (UTF-8 with a BOM so "
            "Excel reads Chinese text; `bom=0` drops it), streamed from a server-side cursor. Columns: "
            + ", ".join(f"`{c}`" for c in jobs.EXPORT_HEADER)
            + ". Cells that a spreadsheet would run as a formula (starting with = + - @) are prefixed with an "
              "apostrophe. Over EXPORT_SYNC_MAX_ROWS rows (50,000 by default) the answer is 202 with an export "
              "job instead: poll it, then download its `file_url`." + errors_doc(*EXPORT_CODES)),
        parameters=[*(OpenApiParameter(name, OpenApiTypes.STR, description=str(f.extra.get("help_text") or ""))
                      for name, f in TicketFilter.base_filters.items()),
                    OpenApiParameter("bom", OpenApiTypes.BOOL, description="Start with a UTF-8 BOM (default true).")],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file."),
                   202: xs.JobSerializer, **error_responses(*EXPORT_CODES)},
    )
    def get(self, request):
        actor = get_actor(request)
        bom = flag(request, "bom", True)
        qs = jobs.export_queryset(actor, request.query_params, user=request.user)
        limit = jobs.export_sync_max_rows()
        if qs.order_by()[: limit + 1].count() > limit:
            query = request.query_params.copy()
            query.pop("bom", None)
            return accepted(request, jobs.start_export(actor, query, bom=bom))
        response = StreamingHttpResponse(jobs.stream_csv(qs, bom=bom), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="aftersales-{stamp}.csv"'
        response["Cache-Control"] = "private, no-store"
        return response


# --- bulk as a job -----------------------------------------------------------------------------------------
BULK_JOB_CODES = (*WRITE_AUTH, "ERR_VALIDATION", "ERR_BULK_002", "ERR_JOB_003")


class BulkJobView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="Batch review as a background job",
        description=("The body of `POST /api/v1/aftersales/bulk/`, for any number of ids up to BULK_JOB_MAX_IDS "
                     "(10,000 by default): always 202 with a job. Each id has its own result through the same "
                     "service; the job's report holds one result per id (`{id, ok, error}`)."
                     + errors_doc(*BULK_JOB_CODES)),
        request=xs.BulkJobInputSerializer,
        responses={202: xs.JobSerializer, **error_responses(*BULK_JOB_CODES)},
    )
    def post(self, request):
        serializer = xs.BulkJobInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.params()
        action, ids = data.pop("action"), data.pop("ids")
        return accepted(request, jobs.start_bulk(get_actor(request), action, ids, data))


# --- imports -----------------------------------------------------------------------------------------------
IMPORT_CODES = (*WRITE_AUTH, "ERR_VALIDATION", "ERR_UNSUPPORTED_MEDIA_TYPE", "ERR_IMPORT_001", "ERR_IMPORT_002",
                "ERR_IMPORT_003", "ERR_IMPORT_004", "ERR_IMPORT_005")
ROW_CODES = ("ERR_IMPORT_101", "ERR_IMPORT_102", "ERR_IMPORT_103", "ERR_IMPORT_104", "ERR_IMPORT_105",
             "ERR_IMPORT_106", "ERR_PERM_001")


class ReasonImportView(TenantAPIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        tags=[TAG], summary="Import return reasons (批量导入退货原因)",
        description=(
            "multipart/form-data, field `file`: .xlsx or .csv with the header row `return_id` or `order_id`, "
            "`reason_code`, `reason_text` and optionally `note`. `dry_run=1` (the default) checks every row and "
            "answers 200 with a per-row report; nothing is written. `dry_run=0` answers 202 with an import job "
            "that re-checks and applies each valid row (reason set on the request, an operation-log row "
            "`reason_imported` with the note); bad rows change nothing. A request outside the caller's stores is "
            "reported as unknown." + errors_doc(*IMPORT_CODES) + "\n\nPer-row codes: " + ", ".join(ROW_CODES)),
        parameters=[OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Check only (default true).")],
        request={"multipart/form-data": xs.ImportInputSerializer},
        responses={200: xs.ImportReportSerializer, 202: xs.JobSerializer, **error_responses(*IMPORT_CODES)},
    )
    def post(self, request):
        dry_run = flag(request, "dry_run", True)
        serializer = xs.ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        actor = get_actor(request)
        records = imports.read_file(upload)
        if dry_run:
            return Response(xs.ImportReportSerializer(imports.dry_run(actor, records)).data)
        return accepted(request, imports.start(actor, records, filename=upload.name or ""))


# --- jobs --------------------------------------------------------------------------------------------------
class JobPagination(CursorPagination):
    ordering = "-created_at"


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Background jobs",
    description=("The caller's jobs, newest first: the agency owner sees every job of the agency, a sub-account the "
                 "jobs they started. Filters: `kind`, `status`. Cursor-paginated." + errors_doc(*AUTH)),
    parameters=[OpenApiParameter("kind", OpenApiTypes.STR, enum=Job.Kind.values),
                OpenApiParameter("status", OpenApiTypes.STR, enum=Job.Status.values)],
    responses={200: xs.JobSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class JobListView(TenantAPIView, generics.ListAPIView):
    serializer_class = xs.JobSerializer
    pagination_class = JobPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return jobs.jobs_for_actor(None)
        qs = jobs.jobs_for_actor(get_actor(self.request))
        for name, choices in (("kind", Job.Kind.values), ("status", Job.Status.values)):
            value = self.request.query_params.get(name)
            if value:
                if value not in choices:
                    raise AppError(errors.ERR_VALIDATION, fields={name: [", ".join(choices)]})
                qs = qs.filter(**{name: value})
        return qs


class JobDetailView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="One background job",
        description="Status, progress (`done` of `total`), the report so far and, for exports, `file_url`."
                    + errors_doc(*AUTH, "ERR_NOT_FOUND"),
        responses={200: xs.JobDetailSerializer, **error_responses(*AUTH, "ERR_NOT_FOUND")},
    )
    def get(self, request, job_id):
        job = jobs.job_for_actor(get_actor(request), job_id)
        return Response(xs.JobDetailSerializer(job, context={"request": request}).data)


class JobFileView(TenantAPIView):
    content_negotiation_class = FirstRenderer

    @extend_schema(
        tags=[TAG], summary="Download a job's result file",
        description="The export's CSV, to the job's creator and the agency owner only."
                    + errors_doc(*AUTH, "ERR_NOT_FOUND", "ERR_JOB_001"),
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
                   **error_responses(*AUTH, "ERR_NOT_FOUND", "ERR_JOB_001")},
    )
    def get(self, request, job_id):
        job = jobs.job_for_actor(get_actor(request), job_id)
        if job.status != Job.Status.SUCCEEDED or not job.result_file:
            raise AppError(errors.ERR_JOB_001)
        response = FileResponse(job.result_file.open("rb"), content_type="text/csv; charset=utf-8",
                                as_attachment=True, filename=f"aftersales-export-{job.public_id}.csv")
        response["Cache-Control"] = "private, no-store"
        return response
