"""The rescoring of duplicate pairs meeting writes committed while it scores: an incident deleted,
a pair decided as it is withdrawn."""

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.models import deletion

from incidents import duplicates, roles, services
from incidents.models import DuplicateDecision, DuplicatePair, Incident
from tests.factories import make_incident, make_place, make_user

ORIGINAL = {
    "title": "China forcibly repatriates 80 North Korean defectors from Tumen",
    "description": "They were caught crossing the river near Sambong-ri and held at Onsong holding centre.",
}
TWIN = {
    "title": "80 North Korean defectors caught near Sambong-ri sent back from Tumen",
    "description": "Held at Onsong holding centre.",
}
OTHER = {
    "title": "Police detain 12 Falun Gong practitioners in Harbin raid",
    "description": "Officers raided a flat in Nangang district and took twelve practitioners to a detention centre.",
}
OTHER_TWIN = {
    "title": "12 Falun Gong practitioners detained in Harbin, Nangang district raid",
    "description": "Raid on a flat; twelve practitioners taken to a detention centre.",
}


def make_places():
    china = make_place(name="China", kind="country", country="CN")
    tumen = make_place(name="Tumen", kind="city", parent=make_place(name="Jilin", kind="province", parent=china))
    harbin = make_place(
        name="Harbin", kind="city", parent=make_place(name="Heilongjiang", kind="province", parent=china)
    )
    return tumen, harbin


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("whole_database", [False, True], ids=["worker", "find_duplicates"])
def test_an_incident_deleted_while_the_rescoring_scores_fails_no_rescoring(monkeypatch, whole_database):
    """An analyst deletes an incident while the worker is scoring its candidates (0.4-1.7 s per
    incident at a million, 36 min for `find_duplicates`): the pairs of every other incident of the
    task are still proposed, and the task does not end in an IntegrityError."""
    tumen, harbin = make_places()
    original = make_incident(**ORIGINAL, places=[tumen])
    twin = make_incident(**TWIN, places=[tumen])
    other = make_incident(**OTHER, places=[harbin], people_count=12, date_start="2023-05-02", date_end="2023-05-02")
    other_twin = make_incident(
        **OTHER_TWIN, places=[harbin], people_count=12, date_start="2023-05-02", date_end="2023-05-02"
    )
    # Without the deletion, both pairs are proposed.
    assert {(a, b) for a, b, _ in duplicates.scored_pairs(at_least=duplicates.PROPOSAL_THRESHOLD)} == {
        (original.pk, twin.pk),
        (other.pk, other_twin.pk),
    }
    scored_pairs = duplicates.scored_pairs
    reviewer = make_user(roles.REVIEWER, confidential=True)

    def scored_while_a_twin_is_deleted(*args, **kwargs):
        scored = scored_pairs(*args, **kwargs)
        # Committed by another request while the worker scored.
        services.record_delete(user=reviewer, record=Incident.objects.get(pk=twin.pk))
        return scored

    monkeypatch.setattr(duplicates, "scored_pairs", scored_while_a_twin_is_deleted)
    if whole_database:
        call_command("find_duplicates", stdout=io.StringIO())
    else:
        duplicates.duplicate_pairs_refresh(incident_ids=[original.pk, other.pk])
    assert set(DuplicatePair.objects.values_list("incident_a", "incident_b")) == {(other.pk, other_twin.pk)}


@pytest.mark.django_db(transaction=True)
def test_a_pair_decided_as_the_rescoring_withdraws_it_is_kept_or_its_decider_is_told(monkeypatch):
    """The rescoring withdraws the waiting pairs, and Django's delete reads them first, then deletes
    them by id alone (`IncidentMerge.pair` is SET_NULL: no single DELETE). An analyst's "different"
    committed between the two was deleted with its note, the analyst told it was saved: the pair
    was proposed again later. Now the decision waits for the withdrawal, and hears the pair is gone."""
    tumen, _ = make_places()
    original = make_incident(**ORIGINAL, places=[tumen])
    twin = make_incident(**TWIN, places=[tumen])
    duplicates.duplicate_pairs_refresh(incident_ids=[twin.pk])
    pair = DuplicatePair.objects.get(incident_a=original, incident_b=twin)
    # The twin's date corrected to a month later: no longer a candidate, the waiting pair goes.
    Incident.objects.filter(pk=twin.pk).update(date_start="2023-09-29", date_end="2023-09-29")
    analyst = make_user(roles.ANALYST)
    answers = []

    def decide_elsewhere():
        try:
            duplicates.duplicate_pair_decide(
                user=analyst, pair=DuplicatePair.objects.get(pk=pair.pk), decision="different", note="Two events"
            )
            answers.append("decided")
        except services.RecordNotFound as refusal:
            answers.append(str(refusal))
        finally:
            connections.close_all()

    delete = deletion.Collector.delete
    deciding = threading.Thread(target=decide_elsewhere)

    def delete_as_a_decision_is_made(self):
        if any(model is DuplicatePair for model in self.data):
            # The analyst's request comes between the collector's read and its DELETE; given a
            # moment, it commits unless it waits for the withdrawal.
            deciding.start()
            deciding.join(timeout=2)
        return delete(self)

    monkeypatch.setattr(deletion.Collector, "delete", delete_as_a_decision_is_made)
    duplicates.duplicate_pairs_refresh(incident_ids=[twin.pk])
    deciding.join(timeout=30)
    kept = DuplicatePair.objects.filter(pk=pair.pk).values_list("decision", "note").first()
    assert (answers, kept) in (
        (["decided"], (DuplicateDecision.DIFFERENT, "Two events")),
        ([f"No duplicate pair {pair.pk}."], None),
    )
