"""REST API routes of the orders app, mounted at ``api/`` by booktime/urls.py.

Also the schema and its docs page, which cover every ``api/`` route (the
event feed's are in ``notifications.api.urls``).
"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from orders.api.permissions import DEFAULT_THROTTLES
from orders.api.views import OrderViewSet, ProductListView

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="api-order")

# Public so that integrators can read the contract before they hold a token.
_public = {"permission_classes": [AllowAny], "throttle_classes": DEFAULT_THROTTLES}

urlpatterns = [
    path("products/", ProductListView.as_view(), name="api-products"),
    path("schema/", SpectacularAPIView.as_view(**_public), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", **_public),
        name="api-docs",
    ),
    *router.urls,
]
