"""One enormous record: a source cited by thousands of claims, an incident with thousands of
rows. What its pages cost must not grow with it beyond what they show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents import roles
from incidents.admin import base
from incidents.models import Incident
from tests.factories import make_claim, make_incident, make_source, make_user


@pytest.fixture
def deleter(client):
    """A Reviewer with Confidential access, who may delete (`services.may_delete`)."""
    client.force_login(make_user(roles.REVIEWER, confidential=True))
    return client


def delete_page(client, record):
    url = reverse(f"admin:incidents_{record._meta.model_name}_delete", args=[record.pk])
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert page.status_code == 200
    return page, len(queries)


def incident_with_claims(count: int) -> Incident:
    incident = make_incident()
    for _ in range(count):
        make_claim(incident=incident, source=make_source())
    return incident


class TestDeleteConfirmationOfAnEnormousRecord:
    def test_an_incidents_delete_page_reads_its_claims_sources_in_one_query(self, deleter):
        # Django's list named each claim by its source, read on its own: 2,002 queries and 21 s
        # for an incident of 2,000 claims.
        _, few = delete_page(deleter, incident_with_claims(2))
        _, more = delete_page(deleter, incident_with_claims(8))

        assert more == few

    def test_a_source_cited_beyond_the_bound_is_counted_not_listed_whole(self, deleter, monkeypatch):
        # Django listed every claim protecting it: 20,000 lines, 1 MB and 10 s for a UN report.
        monkeypatch.setattr(base, "DELETION_LISTED_MAX", 3)
        cited = make_source(title="UN commission of inquiry report")
        for _ in range(5):
            make_claim(incident=make_incident(), source=cited)

        page, _ = delete_page(deleter, cited)
        text = page.content.decode()

        assert text.count("UN commission of inquiry report on INC-") == 3
        assert "… and 2 more" in text

    def test_an_incident_of_many_claims_lists_some_and_counts_them_all(self, deleter, monkeypatch):
        monkeypatch.setattr(base, "DELETION_LISTED_MAX", 3)
        incident = incident_with_claims(5)

        page, _ = delete_page(deleter, incident)
        text = page.content.decode()

        assert text.count("<li>Claim: ") == 2  # the incident itself is the first of the three
        assert "… and 3 more" in text
        assert "Claims: 5" in text
