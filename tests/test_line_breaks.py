"""Line breaks are stored as LF, whichever door wrote them: a browser sends every line break of a
textarea as CR LF (HTML's form submission), where the API and the import write LF, so an unchanged
Save of a description with a line break was a change."""

from importlib import import_module

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from pghistory.models import Events

from incidents import roles
from incidents.models import Claim, Incident, IncidentRevision, Organization, Response, Source
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_organization, make_source, make_user
from tests.form_support import form_fields

pytestmark = pytest.mark.django_db


def browser_save(client, url: str, form_id: str):
    """GET the page and POST its form back as a browser's Save does: every line break of a textarea
    sent as CR LF, whatever the page showed."""
    data = form_fields(client.get(url).content.decode(), form_id)
    data = {name: value.replace("\n", "\r\n") if isinstance(value, str) else value for name, value in data.items()}
    return client.post(url, {**data, "_save": "Save"})


def record_with_line_breaks(model: str):
    """A record of `model` whose text holds a line break, written as the API and the import write it;
    the record whose admin page shows it."""
    if model == "incident":
        return make_incident(review_state="draft", description="Line one\nLine two")
    if model == "claim":
        incident = make_incident(review_state="draft")
        make_claim(incident=incident, excerpt="First line\nSecond line")
        return incident
    if model == "source":
        return make_source(notes="Note one\nNote two")
    if model == "response":
        response = Response.objects.create(
            organization=make_organization(), kind="statement", date="2023-10-10", description="Said\nthis"
        )
        response.incidents.set([make_incident()])
        return response
    return make_organization(description="Organization one\nOrganization two")


@pytest.mark.parametrize("model", ["incident", "claim", "source", "response", "organization"])
def test_a_browser_save_of_an_unchanged_page_with_a_line_break_writes_nothing(client, model):
    record = record_with_line_breaks(model)
    version, events = type(record).objects.get(pk=record.pk).version, Events.objects.count()
    client.force_login(make_user(roles.REVIEWER))
    url = reverse(f"admin:incidents_{record._meta.model_name}_change", args=[record.pk])

    answer = browser_save(client, url, f"{record._meta.model_name}_form")

    assert answer.status_code == 302
    assert type(record).objects.get(pk=record.pk).version == version
    assert Events.objects.count() == events


def test_an_analysts_unchanged_save_of_a_published_incident_proposes_no_revision(client):
    incident = make_incident(review_state="published", description="Line one\nLine two")
    client.force_login(make_user(roles.ANALYST))

    browser_save(client, reverse("admin:incidents_incident_change", args=[incident.pk]), "incident_form")

    assert not IncidentRevision.objects.exists()


def test_a_line_break_typed_in_a_browser_is_stored_as_the_api_stores_it(client):
    incident = make_incident(review_state="draft", description="Before")
    client.force_login(make_user(roles.REVIEWER))
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    data = form_fields(client.get(url).content.decode(), "incident_form")

    client.post(url, {**data, "description": "Line one\r\nLine two\rLine three", "_save": "Save"})
    sent = client_for(make_user(roles.REVIEWER)).post(
        f"{API}/incidents/",
        {
            "title": "Sent with CR LF",
            "incident_type": "forced-repatriation",
            "date_start": "2023-09-18",
            "date_end": "2023-09-18",
            "description": "Line one\r\nLine two",
        },
        format="json",
    )

    assert Incident.objects.get(pk=incident.pk).description == "Line one\nLine two\nLine three"
    assert sent.json()["description"] == "Line one\nLine two"


def test_migration_0115_stores_the_line_breaks_saved_before_as_lf():
    incident = make_incident(description="Saved from a browser")
    claim = make_claim(incident=incident, excerpt="Excerpt")
    source, organization = make_source(notes="Notes"), make_organization(description="About")
    with connection.cursor() as cursor:
        for record, column in [
            (incident, "description"),
            (claim, "excerpt"),
            (source, "notes"),
            (organization, "description"),
        ]:
            cursor.execute(
                f"UPDATE {record._meta.db_table} SET {column} = %s WHERE id = %s", ["One\r\nTwo\rThree", record.pk]
            )

    migration = import_module("incidents.migrations.0115_line_breaks_as_lf")
    with connection.schema_editor() as schema_editor:
        migration.line_breaks_as_lf(apps, schema_editor)

    assert Incident.objects.get(pk=incident.pk).description == "One\nTwo\nThree"
    assert Claim.objects.get(pk=claim.pk).excerpt == "One\nTwo\nThree"
    assert Source.objects.get(pk=source.pk).notes == "One\nTwo\nThree"
    assert Organization.objects.get(pk=organization.pk).description == "One\nTwo\nThree"


def test_a_revision_proposed_with_cr_lf_before_shows_no_change_of_line_breaks():
    # An unchanged browser Save of a published incident proposed its description as CR LF; the
    # Reviewer's differences showed it changed, two values that read alike, which accepting skips.
    incident = make_incident(review_state="published", title="Returned", description="Line one\nLine two")
    revision = IncidentRevision.objects.create(
        incident=incident,
        proposed_by=make_user(roles.ANALYST),
        base_version=incident.version,
        changes={"data": {"title": "Sent back", "description": "Line one\r\nLine two"}},
    )

    diff = client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/{revision.pk}/").json()["diff"]

    assert [row["field"] for row in diff] == ["Title"]
