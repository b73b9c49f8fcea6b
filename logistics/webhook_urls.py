"""Carrier webhooks, mounted at /webhooks/ (paths fixed by API.md)."""

from django.urls import path

from logistics import webhooks

app_name = "webhooks"

urlpatterns = [
    path("aftership/", webhooks.aftership, name="aftership"),
    path("17track/", webhooks.seventeentrack, name="17track"),
]
