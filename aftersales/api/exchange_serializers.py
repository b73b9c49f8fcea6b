"""Shapes of the ERP exchange endpoints: jobs, bulk jobs, reason imports."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aftersales.api.serializers import BulkInputSerializer, IsoDateTimeField
from aftersales.models import Job
from stores.errors import CATALOGUE


def _absolute(request, path: str) -> str:
    return request.build_absolute_uri(path) if request is not None else path


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class JobSerializer(serializers.Serializer):
    """A job as the list shows it: status and progress, no report."""

    id = serializers.UUIDField(source="public_id")
    url = serializers.SerializerMethodField(help_text="This job's address (poll it until status is final).")
    # Plain strings in the schema (the enum names "kind" and "status" are taken by other components).
    kind = serializers.CharField(help_text="bulk_action, import_reasons or export.")
    status = serializers.CharField(help_text="queued → running → succeeded or failed.")
    total = serializers.IntegerField(help_text="Items (ids, rows) to handle; 0 until known.")
    done = serializers.IntegerField(help_text="Items handled so far (written in batches).")
    progress = serializers.SerializerMethodField(help_text="done / total between 0 and 1 (1 once succeeded).")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    error = serializers.SerializerMethodField(help_text="Why the job failed; null otherwise.")
    file_url = serializers.SerializerMethodField(help_text=(
        "Export jobs: where to download the CSV once succeeded (only for the job's creator and the agency "
        "owner); null otherwise."))
    created_at = IsoDateTimeField()
    started_at = IsoDateTimeField(allow_null=True)
    finished_at = IsoDateTimeField(allow_null=True)

    def get_url(self, job) -> str:
        return _absolute(self.context.get("request"), reverse("jobs-detail", kwargs={"job_id": job.public_id}))

    def get_progress(self, job) -> float:
        if job.status == Job.Status.SUCCEEDED:
            return 1.0
        return round(min(1.0, job.done / job.total), 4) if job.total else 0.0

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job):
        entry = CATALOGUE.get(job.error_code) if job.error_code else None
        if entry is None:
            return None
        return {"code": entry.code, "message": str(entry.message)}

    def get_file_url(self, job) -> str | None:
        if not job.result_file:
            return None
        return _absolute(self.context.get("request"), reverse("jobs-file", kwargs={"job_id": job.public_id}))


class JobDetailSerializer(JobSerializer):
    report = serializers.JSONField(help_text=(
        "bulk_action: {results: [{id, ok, error}], succeeded, failed}; import_reasons: {rows: [{row, ok, code, "
        "message, fields, return_id, order_id, ticket}], succeeded, failed}; export: {rows, columns}. "
        "While running, the results so far."))

    def to_representation(self, job):
        data = super().to_representation(job)
        rows = data["report"].get("rows") if isinstance(data["report"], dict) else None
        if isinstance(rows, list):  # import rows carry catalogue messages: shown in the caller's language
            data["report"] = {**data["report"], "rows": [_localised(row) for row in rows]}
        return data


def _localised(row):
    entry = CATALOGUE.get(row.get("code") or "") if isinstance(row, dict) else None
    return {**row, "message": str(entry.message)} if entry is not None else row


class BulkJobInputSerializer(BulkInputSerializer):
    ids = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, help_text=(
        "Public ids of the requests, at most BULK_JOB_MAX_IDS (10,000 by default; ERR_JOB_003); duplicates act "
        "once."))


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=(
        ".xlsx or .csv (UTF-8 with or without BOM, or GB18030). Header row: return_id or order_id, reason_code, "
        "reason_text, note (optional)."))


class ImportRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Row number as the spreadsheet shows it (the header is row 1).")
    ok = serializers.BooleanField()
    code = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    fields = serializers.ListField(child=serializers.CharField(), help_text="Columns at fault.")
    return_id = serializers.CharField()
    order_id = serializers.CharField()
    ticket = serializers.UUIDField(allow_null=True, help_text="The request the row names, when valid.")


class ImportReportSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    total = serializers.IntegerField()
    valid = serializers.IntegerField()
    invalid = serializers.IntegerField()
    rows = ImportRowSerializer(many=True)
