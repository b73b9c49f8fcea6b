from django.urls import path

from stores.api import views

urlpatterns = [
    path("stores/", views.StoreListView.as_view(), name="store-list"),
    path("error-codes/", views.ErrorCodeListView.as_view(), name="error-code-list"),
]
