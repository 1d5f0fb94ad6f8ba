"""Browser pages, mounted at "" in booktime/urls.py."""

from django.urls import path

from frontend import notify_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_page, name="logout"),
    path("logged-out/", views.logged_out, name="logged_out"),
    path("orders/", views.my_orders, name="my_orders"),
    path("orders/<int:order_id>/", views.order_tracking, name="order_tracking"),
    path("track/", views.track_link, name="track"),
    path("track/<int:order_id>/", views.track_order, name="track_order"),
    path("staff/", views.staff_dashboard, name="staff_dashboard"),
    path("preferences/", notify_views.notification_preferences, name="notification_preferences"),
    path("unsubscribe/<str:token>/", notify_views.email_unsubscribe, name="email_unsubscribe"),
    path("service-worker.js", notify_views.service_worker, name="service_worker"),
]
