"""An incident with more claims than one page holds (a mass event's testimonies) shows them a page
at a time on its admin page, and a Save keeps the claims its page did not show (`IncidentRowsInline.rows_page`)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents import roles
from incidents.admin.incidents import ClaimInline
from incidents.models import Claim, IncidentRevision
from incidents.services import incident_revision_accept
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.form_support import form_fields, saved_unchanged

pytestmark = pytest.mark.django_db

PER_PAGE = 3


@pytest.fixture(autouse=True)
def three_claims_a_page(monkeypatch):
    monkeypatch.setattr(ClaimInline, "rows_per_page", PER_PAGE)


def change_url(incident, page=None):
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    return url if page is None else f"{url}?claims_page={page}"


def incident_of_claims(count: int, **fields):
    incident = make_incident(people_count=80, **fields)
    claims = [
        make_claim(incident=incident, source=make_source(title=f"Testimony {number}"), people_count=80 + number)
        for number in range(1, count + 1)
    ]
    return incident, claims


def claims_as_stored(incident):
    return list(
        Claim.objects.filter(incident=incident).order_by("pk").values_list("pk", "source__title", "people_count")
    )


def shown_claim_ids(response) -> list[int]:
    fields = form_fields(response.content.decode())
    return [int(fields[f"claims-{index}-id"]) for index in range(int(fields["claims-INITIAL_FORMS"]))]


@pytest.fixture
def reviewer_client(client):
    client.force_login(make_user(roles.REVIEWER))
    return client


def test_a_page_shows_its_claims_and_links_to_the_others(reviewer_client):
    incident, claims = incident_of_claims(8)

    first = reviewer_client.get(change_url(incident))
    third = reviewer_client.get(change_url(incident, 3))

    assert shown_claim_ids(first) == [claim.pk for claim in claims[:3]]
    assert shown_claim_ids(third) == [claim.pk for claim in claims[6:]]
    page = first.content.decode()
    assert "Claims 1–3 of 8 are shown here. A Save keeps the others as they are." in page
    assert 'href="?claims_page=2"' in page and 'href="?claims_page=3"' in page
    assert "Testimony 4" not in page
    assert "Claims 7–8 of 8" in third.content.decode()


@pytest.mark.parametrize("sent", ["abc", "0", "99", ""])
def test_a_page_number_that_is_no_page_shows_the_first_or_the_last(reviewer_client, sent):
    incident, claims = incident_of_claims(5)

    response = reviewer_client.get(change_url(incident, sent))

    assert response.status_code == 200
    # Django's `Paginator.get_page`: a number out of range is the last page, no number the first.
    expected = claims[3:] if sent in {"0", "99"} else claims[:3]
    assert shown_claim_ids(response) == [claim.pk for claim in expected]


def test_a_save_of_one_page_changes_and_deletes_there_and_keeps_every_other_claim(reviewer_client):
    incident, claims = incident_of_claims(8)
    before = claims_as_stored(incident)
    fields = form_fields(reviewer_client.get(change_url(incident, 2)).content.decode())
    # Page 2: claims 4, 5 and 6. The fifth's figure corrected, the fourth deleted.
    assert [fields[f"claims-{index}-id"] for index in range(3)] == [str(claim.pk) for claim in claims[3:6]]

    response = saved_unchanged(
        reviewer_client, change_url(incident, 2), **{"claims-1-people_count": "250", "claims-0-DELETE": "on"}
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    assert claims_as_stored(incident) == [
        (pk, title, 250 if pk == claims[4].pk else count) for pk, title, count in before if pk != claims[3].pk
    ]


@pytest.mark.parametrize("role", [roles.REVIEWER, roles.ANALYST])
def test_save_and_continue_editing_opens_the_page_of_claims_saved(client, role):
    # An Analyst's change of a published incident is proposed, and leads back to its page too.
    client.force_login(make_user(role))
    incident, _ = incident_of_claims(7, review_state="published")

    response = saved_unchanged(client, change_url(incident, 2), _continue="1", **{"claims-0-people_count": "300"})

    assert response.status_code == 302
    assert response["Location"] == change_url(incident, 2)


def test_an_unchanged_save_of_a_page_changes_nothing(reviewer_client):
    incident, _ = incident_of_claims(7)
    before = claims_as_stored(incident)
    version = incident.version

    response = saved_unchanged(reviewer_client, change_url(incident, 3))

    assert response.status_code == 302
    assert claims_as_stored(incident) == before
    incident.refresh_from_db()
    assert incident.version == version


def test_an_analysts_change_of_a_page_proposes_every_claim_and_accepted_loses_none(client):
    analyst = make_user(roles.ANALYST)
    incident, claims = incident_of_claims(7, review_state="published")
    before = claims_as_stored(incident)
    client.force_login(analyst)

    response = saved_unchanged(client, change_url(incident, 2), **{"claims-0-people_count": "300"})

    assert response.status_code == 302
    assert claims_as_stored(incident) == before  # waiting for a Reviewer
    revision = IncidentRevision.objects.get(incident=incident)
    assert sorted(claim["id"] for claim in revision.changes["claims"]) == [claim.pk for claim in claims]

    incident_revision_accept(revision=revision, user=make_user(roles.REVIEWER))

    assert claims_as_stored(incident) == [
        (pk, title, 300 if pk == claims[3].pk else count) for pk, title, count in before
    ]


def test_a_claim_hidden_from_the_writer_stays_whatever_page_they_save(client):
    analyst = make_user(roles.ANALYST)
    incident, _ = incident_of_claims(6, review_state="draft", created_by=analyst)
    hidden = make_claim(incident=incident, source=make_source(title="Informant K", confidential=True))
    client.force_login(analyst)

    first = client.get(change_url(incident))
    response = saved_unchanged(client, change_url(incident, 2), **{"claims-0-people_count": "300"})

    assert "of 6 are shown" in first.content.decode()
    assert "Informant K" not in first.content.decode()
    assert response.status_code == 302
    assert Claim.objects.filter(pk=hidden.pk).exists()
    assert Claim.objects.filter(incident=incident).count() == 7


def test_a_page_reads_as_many_queries_whatever_the_claims(reviewer_client):
    counts = []
    for claims in (4, 40):
        incident, _ = incident_of_claims(claims)
        reviewer_client.get(change_url(incident, 2))
        with CaptureQueriesContext(connection) as queries:
            response = reviewer_client.get(change_url(incident, 2))
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_an_incident_of_one_pages_claims_shows_them_all_without_pages(reviewer_client):
    incident, claims = incident_of_claims(PER_PAGE)

    response = reviewer_client.get(change_url(incident))

    assert shown_claim_ids(response) == [claim.pk for claim in claims]
    assert "Pages of claims" not in response.content.decode()


def test_a_confidential_claim_not_shown_stays_confidential_when_its_keeper_saves_another_page(client):
    client.force_login(make_user(roles.REVIEWER, confidential=True))
    incident, claims = incident_of_claims(4)
    informant = make_claim(incident=incident, source=make_source(title="Informant K"), confidential=True)

    response = saved_unchanged(client, change_url(incident, 1), **{"claims-0-people_count": "300"})

    assert response.status_code == 302
    assert Claim.objects.get(pk=informant.pk).confidential
    assert Claim.objects.get(pk=claims[0].pk).people_count == 300
    assert Claim.objects.filter(incident=incident).count() == 5
