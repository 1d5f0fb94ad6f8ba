"""Root URLs: admin, the REST API under api/, and the browser pages."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("orders.api.urls")),
    path("api/", include("notifications.api.urls")),
    path("", include("frontend.urls")),
]

# JSON errors for api/ paths, Django's pages elsewhere.
handler404 = "orders.api.errors.not_found"
handler500 = "orders.api.errors.server_error"
