"""Helpers shared by the API tests: clients acting as a given user, and the URLs they call."""

from rest_framework.test import APIClient

from accounts.services import token_create

API = "/api/v1"


def client_for(user=None) -> APIClient:
    """A client that authenticates like a partner tool does, with `Authorization: Token …`."""
    client = APIClient()
    if user is not None:
        # As its owner makes it, with a second factor if the account needs one.
        _, key = token_create(user=user, name="test client", second_factor=user.is_staff)
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def incident_url(incident, suffix: str = "") -> str:
    return f"{API}/incidents/{incident.public_id}/{suffix}"


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def public_ids(response) -> set[str]:
    return {incident["public_id"] for incident in results(response)}
