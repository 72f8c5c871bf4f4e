"""Possible duplicates: blocking and scoring (`manage.py find_duplicates`), and the admin's review
queue where staff decide and only Reviewers call two incidents the same."""

import csv
import io
from datetime import date

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from incidents import roles
from incidents.models import DuplicatePair, Incident, Involvement
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
)


def find_duplicates(**options) -> str:
    out = io.StringIO()
    call_command("find_duplicates", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def places():
    china = make_place(name="China", kind="country", country="CN")
    return {
        "china": china,
        "tumen": make_place(name="Tumen", parent=china),
        "dandong": make_place(name="Dandong", parent=china),
        "seoul": make_place(name="Seoul", country="KR"),
    }


@pytest.fixture
def reported_twice(places):
    """One repatriation reported by two outlets relaying one NGO report, with differing titles,
    counts and date precision; and an unrelated incident the same month elsewhere in China."""
    report = make_source(title="NGO report")
    perpetrator = make_organization(name="Ministry of Public Security")
    first = make_incident(
        title="China forcibly repatriates 50 North Korean defectors from Tumen",
        places=[places["tumen"]],
        people_count=50,
    )
    second = make_incident(
        title="50 North Korean defectors forcibly repatriated by China at Tumen",
        places=[places["tumen"]],
        people_count=None,
        people_count_min=40,
        people_count_max=60,
        date_start=date(2023, 8, 1),
        date_end=date(2023, 8, 31),
        date_precision="month",
    )
    for incident in (first, second):
        make_claim(incident=incident, source=make_source(cites=report))
        Involvement.objects.create(incident=incident, organization=perpetrator, role="perpetrator")
    other = make_incident(
        title="Arrest of a missionary in Dandong",
        places=[places["dandong"]],
        people_count=1,
        date_start=date(2023, 8, 27),
        date_end=date(2023, 8, 27),
    )
    return {"first": first, "second": second, "other": other}


class TestFindingPairs:
    def test_the_same_event_reported_twice_scores_high_and_a_different_one_low(self, reported_twice):
        find_duplicates(threshold=0)
        pairs = {(pair.incident_a_id, pair.incident_b_id): pair.score for pair in DuplicatePair.objects.all()}
        first, second, other = (reported_twice[name].pk for name in ("first", "second", "other"))
        assert pairs[(first, second)] >= 0.9
        assert pairs[(first, other)] < 0.6 and pairs[(second, other)] < 0.6

    def test_blocking_leaves_out_another_type_another_country_or_dates_far_apart(self, reported_twice, places):
        first = reported_twice["first"]
        make_incident(title=first.title, places=[places["tumen"]], incident_type=incident_type("deportation"))
        make_incident(title=first.title, places=[places["seoul"]])
        make_incident(
            title=first.title, places=[places["tumen"]], date_start=date(2023, 10, 1), date_end=date(2023, 10, 1)
        )
        find_duplicates(threshold=0)
        # first, second and other are pairwise candidates; none of the three look-alikes is.
        assert DuplicatePair.objects.count() == 3

    def test_the_threshold_keeps_weak_pairs_out_of_the_queue(self, reported_twice):
        assert "1 pairs wait for review." in find_duplicates()
        pair = DuplicatePair.objects.get()
        assert {pair.incident_a, pair.incident_b} == {reported_twice["first"], reported_twice["second"]}

    def test_a_waiting_pair_that_no_longer_qualifies_is_withdrawn_and_a_decided_one_kept(self, reported_twice):
        find_duplicates(threshold=0)
        first, second, other = (reported_twice[name] for name in ("first", "second", "other"))
        decided = DuplicatePair.objects.get(incident_a=first, incident_b=other)
        DuplicatePair.objects.filter(pk=decided.pk).update(decision="unsure", decided_at=timezone.now(), score=0.5)
        other.incident_type = incident_type("deportation")
        other.save()
        second.incident_type = incident_type("deportation")
        second.save()
        find_duplicates(threshold=0)
        # first~second waits no more (another type now); second~other waits; first~other stays as decided.
        assert set(DuplicatePair.objects.values_list("incident_a", "incident_b", "decision")) == {
            (first.pk, other.pk, "unsure"),
            (min(second.pk, other.pk), max(second.pk, other.pk), "pending"),
        }
        assert DuplicatePair.objects.get(decision="unsure").score == 0.5

    def test_a_bad_threshold_is_refused_by_name(self):
        with pytest.raises(CommandError, match="--threshold"):
            find_duplicates(threshold=1.5)


class TestReviewQueue:
    def pair_url(self, pair, suffix="change"):
        return reverse(f"admin:incidents_duplicatepair_{suffix}", args=[pair.pk] if pair else [])

    def test_the_queue_ranks_pairs_and_shows_them_side_by_side(self, client, reported_twice):
        find_duplicates(threshold=0)
        client.force_login(make_user(roles.ANALYST))
        listing = client.get(reverse("admin:incidents_duplicatepair_changelist")).content.decode()
        assert listing.index(reported_twice["second"].public_id) < listing.index(reported_twice["other"].public_id)
        pair = DuplicatePair.objects.first()
        page = client.get(self.pair_url(pair)).content.decode()
        assert "China forcibly repatriates 50 North Korean defectors from Tumen" in page
        assert "50 North Korean defectors forcibly repatriated by China at Tumen" in page
        assert "50 (40–60)" in page or "? (40–60)" in page

    def test_an_analyst_decides_different_and_the_pair_is_never_proposed_again(self, client, reported_twice):
        find_duplicates()
        pair = DuplicatePair.objects.get()
        analyst = make_user(roles.ANALYST)
        client.force_login(analyst)
        client.post(self.pair_url(pair), {"decision": "different", "note": "Two separate groups"})
        pair.refresh_from_db()
        assert (pair.decision, pair.decided_by, pair.note) == ("different", analyst, "Two separate groups")
        find_duplicates()
        pair.refresh_from_db()
        assert pair.decision == "different"
        assert DuplicatePair.objects.filter(decision="pending").count() == 0
        history = client.get(reverse("admin:incidents_duplicatepair_history", args=[pair.pk])).content.decode()
        assert "Different incidents" in history  # the choice as the admin labels it

    def test_only_a_reviewer_may_call_two_incidents_the_same(self, client, reported_twice):
        find_duplicates()
        pair = DuplicatePair.objects.get()
        client.force_login(make_user(roles.ANALYST))
        page = client.post(self.pair_url(pair), {"decision": "same", "note": ""}).content.decode()
        assert "Only a Reviewer may decide that two incidents are the same." in page
        pair.refresh_from_db()
        assert pair.decision == "pending"
        client.force_login(make_user(roles.REVIEWER))
        client.post(self.pair_url(pair), {"decision": "same", "note": ""})
        pair.refresh_from_db()
        assert pair.decision == "same"

    def test_a_pair_with_an_incident_hidden_from_the_reader_is_not_shown(self, client, reported_twice):
        reported_twice["second"].confidential = True
        reported_twice["second"].save()
        find_duplicates()
        pair = DuplicatePair.objects.get()
        client.force_login(make_user(roles.REVIEWER))
        assert (
            reported_twice["second"].public_id
            not in client.get(reverse("admin:incidents_duplicatepair_changelist")).content.decode()
        )
        client.post(self.pair_url(pair), {"decision": "different", "note": ""})
        pair.refresh_from_db()
        assert pair.decision == "pending"
        client.force_login(make_user(roles.REVIEWER, confidential=True))
        assert reported_twice["second"].public_id in client.get(self.pair_url(pair)).content.decode()

    def test_the_queue_costs_a_fixed_number_of_queries(
        self, client, reported_twice, places, django_assert_max_num_queries
    ):
        find_duplicates(threshold=0)
        client.force_login(make_user(roles.ANALYST))
        url = reverse("admin:incidents_duplicatepair_changelist")
        with django_assert_max_num_queries(12) as few:
            client.get(url)
        for number in range(6):
            make_incident(
                title=f"China forcibly repatriates {number} North Koreans from Tumen", places=[places["tumen"]]
            )
        find_duplicates(threshold=0)
        with django_assert_max_num_queries(len(few.captured_queries)):
            client.get(url)


class TestDemoDuplicates:
    def test_the_generator_writes_duplicates_with_their_truth_and_blocking_finds_them(self, tmp_path):
        truth = tmp_path / "truth.csv"
        call_command(
            "generate_demo_data", incidents=40, duplicates=0.25, duplicates_truth=str(truth), stdout=io.StringIO()
        )
        with truth.open() as file:
            pairs = list(csv.DictReader(file))
        assert len(pairs) == 10
        ids = dict(Incident.objects.values_list("public_id", "pk"))
        expected = {tuple(sorted((ids[row["original"]], ids[row["duplicate"]]))) for row in pairs}
        for original, duplicate in ((row["original"], row["duplicate"]) for row in pairs):
            first, second = Incident.objects.get(public_id=original), Incident.objects.get(public_id=duplicate)
            assert first.incident_type_id == second.incident_type_id and first.title != second.title
        find_duplicates(threshold=0)
        found = set(DuplicatePair.objects.values_list("incident_a", "incident_b"))
        assert expected <= found

    def test_a_fraction_outside_zero_to_one_is_refused_before_anything_is_written(self, tmp_path):
        with pytest.raises(CommandError, match="duplicates"):
            call_command("generate_demo_data", "--incidents=5", "--duplicates=1.5")
        assert not Incident.objects.exists()
