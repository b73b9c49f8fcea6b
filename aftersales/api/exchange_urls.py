"""ERP exchange: CSV export, return-reason imports, background jobs."""

urlpatterns: list = []
