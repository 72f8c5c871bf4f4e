from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from accounts.services import second_factor_missing


class TrackerAdminSite(admin.AdminSite):
    """The admin, open to staff only once this session passed the second factor when one is
    required (accounts.services.second_factor_required)."""

    def has_permission(self, request):
        # On the login page, which sees a session that still owes its second factor as it is
        # (accounts.middleware): it must not count as signed in there, or the login would send it
        # back to the index. Every other admin page already sees it as anonymous.
        return super().has_permission(request) and not second_factor_missing(request.user)

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        # The password was accepted (now, or earlier in this session): the second step follows.
        if request.user.is_active and second_factor_missing(request.user):
            next_url = request.POST.get("next") or request.GET.get("next") or reverse("admin:index")
            return redirect(f"{reverse('accounts:two-factor-verify')}?{urlencode({'next': next_url})}")
        return response
