"""A write that sends back an incident's rows as stored, beside one it changes, writes only that one
(`services._replace_children`): the others keep their `updated_at` and gain no history event, and
an incident of thousands of claims is not summed again once for each of them."""

import pytest
from django.urls import reverse

from incidents import roles
from incidents.models import Claim
from tests.api_support import client_for, incident_url
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.form_support import saved_unchanged

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident():
    incident = make_incident(people_count=80, review_state="draft")
    for number in range(1, 4):
        make_claim(incident=incident, source=make_source(title=f"Report {number}"), people_count=80 + number)
    return incident


def stored(incident):
    """Each claim's figure, when it was last written and how many history events it has."""
    return {
        claim.pk: (claim.people_count, claim.updated_at, Claim.pgh_event_model.objects.filter(pgh_obj=claim).count())
        for claim in Claim.objects.filter(incident=incident)
    }


def assert_only_the_first_written(before, after, first_id, figure):
    assert after[first_id][0] == figure and after[first_id][1] > before[first_id][1]
    assert after[first_id][2] == before[first_id][2] + 1
    assert {pk: row for pk, row in after.items() if pk != first_id} == {
        pk: row for pk, row in before.items() if pk != first_id
    }


def test_through_the_api(incident):
    reviewer = make_user(roles.REVIEWER)
    before = stored(incident)
    claims = list(Claim.objects.filter(incident=incident).order_by("pk"))
    rows = [{"id": claim.pk, "source": claim.source_id, "people_count": claim.people_count} for claim in claims]
    rows[0]["people_count"] = 500

    answer = client_for(reviewer).patch(
        incident_url(incident), {"version": incident.version, "claims": rows}, format="json"
    )

    assert answer.status_code == 200, answer.json()
    assert_only_the_first_written(before, stored(incident), claims[0].pk, 500)


def test_through_the_admin(client, incident):
    client.force_login(make_user(roles.REVIEWER))
    before = stored(incident)
    first = Claim.objects.filter(incident=incident).order_by("pk").first()

    response = saved_unchanged(
        client, reverse("admin:incidents_incident_change", args=[incident.pk]), **{"claims-0-people_count": "500"}
    )

    assert response.status_code == 302
    assert_only_the_first_written(before, stored(incident), first.pk, 500)
