"""A colleague's save between opening an incident's page and saving it that removes one of its rows
(a claim deleted, or made confidential for a writer without Confidential access): the save is
refused naming who changed it, not with "Please correct the error below" and no error anywhere
(the row's hidden id refused by its lookup, on a row the page no longer draws)."""

import pytest
from django.urls import reverse

from incidents import roles, services
from incidents.models import Incident
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.form_support import form_fields

pytestmark = pytest.mark.django_db


def change_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


@pytest.fixture
def incident():
    incident = make_incident(title="About 500 North Koreans returned", review_state="draft", people_count=500)
    make_claim(incident=incident, source=make_source(title="HRW"), people_count=500)
    make_claim(incident=incident, source=make_source(title="RFA"), people_count=40)
    return incident


def opened(client, user, incident) -> dict:
    client.force_login(user)
    return form_fields(client.get(change_url(incident)).content.decode(), "incident_form")


def rfa_claim_changed_by(colleague, incident, change: dict) -> None:
    incident.refresh_from_db()
    claims = [
        {"id": claim.pk, "source": claim.source, "people_count": claim.people_count, "confidential": False}
        for claim in incident.claims.order_by("id")
    ]
    claims = [claim for claim in claims if claim["people_count"] != 40] + (
        [] if change.get("deleted") else [{**claims[1], **change}]
    )
    services.incident_update(incident=incident, user=colleague, expected_version=incident.version, claims=claims)


def test_a_claim_a_colleague_deleted_since_refuses_the_save_naming_them(client, incident):
    form = opened(client, make_user(roles.ANALYST), incident)
    rfa_claim_changed_by(make_user(roles.ANALYST, username="alice"), incident, {"deleted": True})

    answer = client.post(change_url(incident), {**form, "people_count": "520", "_save": "Save"})

    assert answer.status_code == 200
    assert f"{incident.public_id} was changed by alice at " in answer.content.decode()
    assert Incident.objects.get(pk=incident.pk).people_count == 500


def test_a_claim_made_confidential_since_refuses_the_save_with_a_reason(client, incident):
    form = opened(client, make_user(roles.ANALYST), incident)
    rfa_claim_changed_by(make_user(roles.REVIEWER, confidential=True), incident, {"confidential": True})

    answer = client.post(change_url(incident), {**form, "people_count": "520", "_save": "Save"})

    assert answer.status_code == 200
    assert f"{incident.public_id} was changed by " in answer.content.decode()
    assert Incident.objects.get(pk=incident.pk).people_count == 500
