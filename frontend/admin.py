"""The admin signs in through the same failure limits as the site (frontend/forms.py)."""

from django.contrib import admin

from frontend.forms import AdminLoginForm

admin.site.login_form = AdminLoginForm
