"""A row id sent back in the incident's form: a hidden row's answers as one no row has."""

import pytest
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, Involvement
from tests.factories import make_claim, make_incident, make_organization, make_source, make_user
from tests.test_admin import incident_post, management_form

pytestmark = pytest.mark.django_db


def change_url(incident):
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def post_with_row_id(client, incident, claim_id, source):
    """The incident's form, sent back with one claim row naming `claim_id` as its id."""
    data = incident_post(incident=incident, claims=[{"id": claim_id, "source": source.pk, "people_count": 80}])
    data.update(management_form("claims", 1, initial=1))
    return client.post(change_url(incident), data)


def outcome(response, incident):
    errors = None
    if response.status_code == 200:
        errors = [
            dict(form.errors) for formset in response.context["inline_admin_formsets"] for form in formset.formset.forms
        ]
    claims = sorted((claim.source_id, claim.confidential) for claim in Claim.objects.filter(incident=incident))
    return response.status_code, errors, claims


def test_a_hidden_claims_id_sent_as_a_row_answers_as_an_id_no_claim_has(client):
    """An analyst without Confidential access sends back her incident's form with a claim row whose
    `id` is a confidential claim's (of another incident she cannot see): the answer must be the one
    an id no claim has gets, or the form tells her which ids are hidden claims."""
    analyst = make_user(roles.ANALYST)
    client.force_login(analyst)
    hidden_incident = make_incident(confidential=True, people_count=5)
    hidden = make_claim(incident=hidden_incident, confidential=True)
    missing_id = Claim.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000

    answers = []
    for claim_id in (hidden.pk, missing_id):
        incident = make_incident(people_count=80, created_by=analyst, review_state="draft")
        source = make_source()
        answers.append(outcome(post_with_row_id(client, incident, claim_id, source), incident)[:2])

    assert answers[0] == answers[1]


def test_a_hidden_incidents_involvement_id_sent_as_a_row_answers_as_an_id_none_has(client):
    """The same with an organization row: `involvements-0-id` naming an involvement of a
    confidential incident the analyst cannot see saves (the row taken as a new one), where an id no
    involvement has is refused ("Select a valid choice"): the form tells her which ids are rows of
    hidden incidents."""
    analyst = make_user(roles.ANALYST)
    client.force_login(analyst)
    hidden_incident = make_incident(confidential=True, review_state="draft")
    organization = make_organization()
    hidden = Involvement.objects.create(incident=hidden_incident, organization=organization, role="perpetrator")
    missing_id = hidden.pk + 1000

    answers = []
    for involvement_id in (hidden.pk, missing_id):
        incident = make_incident(people_count=80, created_by=analyst, review_state="draft")
        data = incident_post(incident=incident)
        data.update(management_form("involvements", 1, initial=1))
        data.update(
            {
                "involvements-0-id": str(involvement_id),
                "involvements-0-incident": str(incident.pk),
                "involvements-0-organization": str(organization.pk),
                "involvements-0-role": "perpetrator",
            }
        )
        response = client.post(change_url(incident), data)
        answers.append((response.status_code, Involvement.objects.filter(incident=incident).count()))

    assert answers[0] == answers[1]
