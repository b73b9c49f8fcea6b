"""ERP exchange: CSV export, return-reason imports, background jobs."""

from django.urls import path

from aftersales.api import exchange_views as views

urlpatterns: list = [
    path("aftersales/export.csv", views.ExportView.as_view(), name="aftersales-export"),
    path("aftersales/bulk-jobs/", views.BulkJobView.as_view(), name="aftersales-bulk-jobs"),
    path("aftersales/imports/reasons/", views.ReasonImportView.as_view(), name="aftersales-import-reasons"),
    path("jobs/", views.JobListView.as_view(), name="jobs-list"),
    path("jobs/<uuid:job_id>/", views.JobDetailView.as_view(), name="jobs-detail"),
    path("jobs/<uuid:job_id>/file/", views.JobFileView.as_view(), name="jobs-file"),
]
