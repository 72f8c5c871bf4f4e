"""The API's door to accounts: ask for a token with a password (and the second factor when the
account has to use one), list one's own tokens, revoke one."""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils.decorators import method_decorator
from django.utils.http import is_same_domain
from django.views.decorators.debug import sensitive_variables
from django_otp.plugins.otp_static.models import StaticDevice
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lockout import attempted_username, attempts_in_turn, sign_in_address_record
from accounts.models import ApiToken
from accounts.services import (
    SecondFactorThrottled,
    second_factor_check,
    second_factor_enrolled,
    second_factor_required,
    token_create,
    token_revoke,
)
from incidents.api.parameters import ReadParametersOnlyMixin
from incidents.api.serializers import UnknownFieldsRefused
from incidents.api.throttling import SignInThrottle
from incidents.numbers import is_whole_number


class TokenRequestSerializer(UnknownFieldsRefused):
    """A field the request does not have is refused naming it, as a record's write refuses one:
    left out, `expires_at` (a field the answer shows) or a misspelt `name` issued a token for the
    default lifetime or under the default name, and the client was told nothing."""

    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, default="API token", help_text="What the token is for.")
    otp = serializers.CharField(
        required=False,
        help_text="Staff accounts: the 6-digit code the authenticator app shows, or an unused recovery code.",
    )

    def validate(self, attrs):
        # The Django request, not DRF's: django-axes marks it when this client is locked out, and
        # its middleware then answers 429 with the lockout message.
        request = self.context["request"]._request
        with attempts_in_turn(request, attempted_username(request, attrs)):
            return self._checked(request, attrs)

    def _checked(self, request, attrs):
        user = authenticate(request, username=attrs["username"], password=attrs["password"])
        if user is None:
            raise serializers.ValidationError("Unable to log in with the username and password given.")
        if second_factor_required(user):
            if not second_factor_enrolled(user):
                # A password alone cannot set up a first app (setup links): say whom to ask.
                message = (
                    "This account must set up its second factor first: ask an administrator for a setup link "
                    "for its first authenticator app, set the app up through it, then send the app's code as otp."
                )
                raise serializers.ValidationError({"otp": message})
            if not attrs.get("otp"):
                raise serializers.ValidationError(
                    {"otp": "This account signs in with a second factor: send the code from the authenticator app."}
                )
            try:
                device = second_factor_check(request=request, user=user, code=attrs["otp"])
            except SecondFactorThrottled as throttled:
                raise serializers.ValidationError({"otp": str(throttled)}) from throttled
            if device is None:
                raise serializers.ValidationError({"otp": "That code is not right, or was already used."})
            attrs["second_factor"] = True
            attrs["recovery_code"] = isinstance(device, StaticDevice)
        # The password and (when the account has one) the code were right: a sign-in finished here.
        sign_in_address_record(request=request, user=user)
        attrs["user"] = user
        return attrs


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "hint", "created_at", "last_used_at", "expires_at", "second_factor"]


class IssuedTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The token itself, shown this once: keep it secret.")

    class Meta(TokenSerializer.Meta):
        fields = ["token", *TokenSerializer.Meta.fields]


class NotFromAnotherSite(BasePermission):
    """A token is asked for by a client of its own (curl, a script, this API's browsable page),
    never by a page of another site, which a browser names in `Origin` (`null` from a sandboxed
    frame); a client that sends none is no such page. The endpoint takes a form's fields, which
    any site may post from its visitors' browsers unasked: a link sent to a Reviewer, left open at
    the office, posted wrong passwords for their username from the office's address, which the
    lockout counts as theirs, and locked them out of signing in from the one address the wide
    bounds keep open to them (a day, past TRACKER_LOCKOUT_FAMILIAR_FAILURES), and spent the
    office's sign-in rate. Checked before the throttle and the password: such a request counts
    nowhere."""

    message = (
        "A token is asked for by your own client (curl, a script), not from another site's page: "
        "this request came from a page of another site."
    )

    def has_permission(self, request, view):
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.get_host()}" or trusted_origin(origin)


def trusted_origin(origin: str) -> bool:
    """Whether CSRF_TRUSTED_ORIGINS names `origin` as Django's CSRF check reads it: exactly, or by a
    wildcard for its subdomains (`https://*.example.org`). Compared exactly alone, a site behind a
    proxy that ends TLS unsaid (request.scheme `http`) refused its own pages, whose forms Django's
    CSRF check took for the wildcard."""
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        asked = urlsplit(origin)
    except ValueError:
        return False
    return any(
        trusted.scheme == asked.scheme and is_same_domain(asked.netloc, trusted.netloc.lstrip("*"))
        for trusted in map(urlsplit, settings.CSRF_TRUSTED_ORIGINS)
        if trusted.netloc.startswith("*")
    )


class TokenRequestView(ReadParametersOnlyMixin, APIView):
    """A new API token for the account whose username and password are given."""

    authentication_classes = []
    permission_classes = [NotFromAnotherSite]
    throttle_classes = [SignInThrottle]

    @extend_schema(request=TokenRequestSerializer, responses={200: IssuedTokenSerializer})
    # The password and the new token are in the local variables of this view and of what it calls (a
    # serializer's repr holds its data): a server error's report shows none of them.
    @method_decorator(sensitive_variables())
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token, key = token_create(
            user=serializer.validated_data["user"],
            name=serializer.validated_data["name"],
            second_factor=serializer.validated_data.get("second_factor", False),
            recovery_code=serializer.validated_data.get("recovery_code", False),
        )
        token.token = key
        # 200 rather than 201, as DRF's obtain_auth_token answered: existing clients check for it.
        # The token is shown this once: no cache may keep it (as RFC 6749 asks of a token answer).
        return Response(
            IssuedTokenSerializer(token).data, status=status.HTTP_200_OK, headers={"Cache-Control": "no-store"}
        )


class TokenViewSet(ReadParametersOnlyMixin, mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The signed-in account's own API tokens; DELETE revokes one."""

    serializer_class = TokenSerializer
    permission_classes = [IsAuthenticated]
    # An account has a handful of tokens: one page, no cursor.
    pagination_class = None
    # Anything but a number is no token: the API's JSON 404 answers it.
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema is built without a user
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    def destroy(self, request, *args, **kwargs):
        # A number int() cannot read (thousands of digits) is no token either.
        token_id = self.kwargs["pk"]
        if not (is_whole_number(token_id) and token_revoke(user=request.user, token_id=int(token_id))):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
