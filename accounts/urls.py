from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.security, name="security"),
    path("two-factor/", views.two_factor_verify, name="two-factor-verify"),
    path("two-factor/setup/", views.two_factor_setup, name="two-factor-setup"),
    path("two-factor/setup/link/", views.setup_link_open, name="setup-link"),
    # After the link's own address, which `<key>` would match too.
    path("two-factor/setup/<str:key>/", views.setup_link_in_path, name="setup-link-in-path"),
    path("recovery-codes/", views.recovery_codes_new, name="recovery-codes-new"),
    path("tokens/", views.token_new, name="token-new"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke_view, name="token-revoke"),
    path("confirm/", views.confirm_identity, name="confirm"),
    path("sessions/end-others/", views.sessions_end_others, name="sessions-end-others"),
    path("sign-out/", views.sign_out, name="sign-out"),
    path("signed-in/", views.signed_in, name="signed-in"),
]
