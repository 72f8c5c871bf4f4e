"""Helpers shared by the API tests: clients acting as a given user, and the URLs they call."""

from rest_framework.test import APIClient

from accounts.models import ApiToken, token_digest
from accounts.services import token_create

API = "/api/v1"


def client_for(user=None) -> APIClient:
    """A client that authenticates like a partner tool does, with `Authorization: Token …`."""
    client = APIClient()
    if user is not None:
        # One token per account while it works, as a partner tool keeps its own: an account has at
        # most API_TOKENS_PER_ACCOUNT of them, and tests ask hundreds of questions as one reader.
        key = getattr(user, "_test_client_key", None)
        if key is None or not ApiToken.objects.usable().filter(digest=token_digest(key)).exists():
            # As its owner makes it, with a second factor if the account needs one.
            _, key = token_create(user=user, name="test client", second_factor=user.is_staff)
            user._test_client_key = key
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def incident_url(incident, suffix: str = "") -> str:
    return f"{API}/incidents/{incident.public_id}/{suffix}"


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def public_ids(response) -> set[str]:
    return {incident["public_id"] for incident in results(response)}


def etag_version(etag: str) -> int:
    """The version an ETag names, whatever audience it names it for (`"staff.3"`: 3)."""
    return int(etag.strip('"').rpartition(".")[2])
