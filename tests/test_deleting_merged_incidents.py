"""An incident once merged, the merge undone, is deleted as any other: its merge's record goes with
it, kept in the history. One whose merge is not undone is not: merged away, its address leads to the
survivor; the survivor holds the other's rows. The refusal says what to do (undo the merge first),
through the API and the admin, and names no other incident. Before, an incident ever merged was never
deleted: its merge's record protected it ("still used by incident merges; remove those uses
first"), and no door removes that record."""

import threading

import psycopg
import pytest
from django.db import connection, transaction
from django.urls import reverse

from incidents import merges, roles, services
from incidents.models import Claim, DuplicatePair, Incident, IncidentMerge
from tests.api_support import client_for, incident_url
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.test_write_conflicts import in_threads, wait_until_waiting


@pytest.fixture
def world():
    """One repatriation entered twice, each with a claim of its own (one confidential)."""
    survivor = make_incident(title="80 sent back from Tumen", people_count=80)
    merged = make_incident(title="Repatriation at Tumen", people_count=100)
    make_claim(incident=survivor, source=make_source(title="Daily"), excerpt="80 people")
    make_claim(incident=merged, source=make_source(title="Informant notes"), excerpt="100", confidential=True)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    return {"survivor": survivor, "merged": merged, "pair": pair}


@pytest.fixture
def merge(keeper, world):
    return merges.incident_merge(user=keeper, pair=world["pair"], note="One report, two outlets")


@pytest.fixture
def undone(keeper, merge):
    return merges.incident_merge_undo(user=keeper, merge=merge, note="Two events after all")


def delete_page(incident) -> str:
    return reverse("admin:incidents_incident_delete", args=[incident.pk])


class TestAMergeNotUndone:
    def test_the_api_refuses_the_survivor_saying_to_undo_it_first(self, keeper, world, merge):
        survivor = world["survivor"]

        answer = client_for(keeper).delete(incident_url(survivor), HTTP_IF_MATCH="*")

        assert answer.status_code == 409, answer.content
        detail = answer.json()["detail"]
        assert f"{survivor.public_id} holds an incident merged into it: undo that merge first" in detail
        assert world["merged"].public_id not in detail
        assert Incident.objects.filter(pk=survivor.pk).exists()
        assert IncidentMerge.objects.filter(pk=merge.pk, undone_at=None).exists()

    def test_the_api_has_no_merged_incident_to_delete(self, keeper, world, merge):
        # Its address answers for the survivor (301 on a read): nothing is deleted there.
        answer = client_for(keeper).delete(incident_url(world["merged"]), HTTP_IF_MATCH="*")

        assert answer.status_code == 404
        assert Incident.objects.filter(pk=world["merged"].pk, merged_into=world["survivor"]).exists()

    def test_the_admins_confirmation_names_it_and_deletes_nothing(self, client, keeper, world, merge):
        survivor = world["survivor"]
        client.force_login(keeper)

        page = client.get(delete_page(survivor))

        assert page.status_code == 200
        text = page.content.decode()
        reason = f"<li>{survivor.public_id} holds an incident merged into it: undo that merge first (from its page), "
        assert reason in text
        assert "Yes, I’m sure" not in text
        client.post(delete_page(survivor), {"post": "yes"})
        assert Incident.objects.filter(pk=survivor.pk).exists()
        assert IncidentMerge.objects.filter(pk=merge.pk, undone_at=None).exists()

    def test_the_admin_has_no_merged_incident_to_delete(self, client, keeper, world, merge):
        # Its pages lead to the survivor's.
        client.force_login(keeper)

        answer = client.post(delete_page(world["merged"]), {"post": "yes"})

        assert answer.status_code == 302
        assert Incident.objects.filter(pk=world["merged"].pk, merged_into=world["survivor"]).exists()


class TestAMergeUndone:
    @pytest.mark.parametrize("side", ["merged", "survivor"])
    def test_the_api_deletes_either_incident_with_its_merges_record_kept_in_history(self, keeper, world, undone, side):
        incident, other = world[side], world["merged" if side == "survivor" else "survivor"]
        others_claims = set(Claim.objects.filter(incident=other).values_list("pk", flat=True))

        answer = client_for(keeper).delete(incident_url(incident), HTTP_IF_MATCH="*")

        assert answer.status_code == 204, answer.content
        assert not Incident.objects.filter(pk=incident.pk).exists()
        assert not IncidentMerge.objects.filter(pk=undone.pk).exists()
        events = IncidentMerge.pgh_event_model.objects.filter(pgh_obj_id=undone.pk)
        assert {event.pgh_label for event in events} >= {"insert", "update", "delete"}
        assert events.get(pgh_label="delete").note.startswith("One report, two outlets")
        # The other incident keeps what is its own again.
        assert set(Claim.objects.filter(incident=other).values_list("pk", flat=True)) == others_claims

    def test_the_admin_deletes_it_after_its_confirmation(self, client, keeper, world, undone):
        client.force_login(keeper)
        page = client.get(delete_page(world["merged"]))
        assert "Yes, I’m sure" in page.content.decode()

        answer = client.post(delete_page(world["merged"]), {"post": "yes"})

        assert answer.status_code == 302
        assert not Incident.objects.filter(pk=world["merged"].pk).exists()
        assert not IncidentMerge.objects.exists()
        assert Incident.objects.filter(pk=world["survivor"].pk).exists()

    def test_who_merged_in_confidence_and_when_stays_withheld_once_its_record_is_gone(self, keeper, world, undone):
        # The survivor's history withholds who merged and undid, and when, on the rows the merge
        # wrote (its revision), by the merge's record: deleted with the merged incident, the rows
        # named the Reviewer, with their times, to staff without Confidential access (found by an
        # attack review).
        assert undone.note_confidential
        colleague = make_user(roles.REVIEWER)

        def written_by_the_merge() -> list:
            entries = client_for(colleague).get(incident_url(world["survivor"], "history/")).json()["results"]
            revisions = [entry for entry in entries if entry["record"] == "incidents.IncidentRevision"]
            assert revisions
            return [(entry["user"], entry["at"]) for entry in revisions if (entry["user"], entry["at"]) != (None, None)]

        assert written_by_the_merge() == []
        deleted = client_for(keeper).delete(incident_url(world["merged"]), HTTP_IF_MATCH="*")
        assert deleted.status_code == 204, deleted.content

        assert not IncidentMerge.objects.exists()
        assert written_by_the_merge() == []
        # Those with Confidential access read them.
        entries = client_for(keeper).get(incident_url(world["survivor"], "history/")).json()["results"]
        assert keeper.username in {
            entry["user"] for entry in entries if entry["record"] == "incidents.IncidentRevision"
        }


@pytest.mark.django_db(transaction=True)
def test_a_merge_committed_while_its_survivor_is_deleted_refuses_the_deletion(keeper, world):
    # The deletion read the incident's merges, found none (the merge not yet committed), then
    # deleted it once the merge's lock was released: a database error (a 500), the claims the merge
    # had moved to it not among the rows it had collected to delete with it.
    merged_and_waiting, commit = threading.Event(), threading.Event()

    def merge_held_open():
        with transaction.atomic():
            merges.incident_merge(user=keeper, pair=world["pair"], note="One report, two outlets")
            merged_and_waiting.set()
            commit.wait(20)

    def delete_survivor():
        return services.record_delete(user=keeper, record=Incident.objects.get(pk=world["survivor"].pk))

    merging, _ = in_threads(merge_held_open)
    assert merged_and_waiting.wait(20)
    with psycopg.connect(**connection.get_connection_params()) as observer:
        deleting, answers = in_threads(delete_survivor)
        wait_until_waiting(observer, 1)
    commit.set()
    for thread in (*merging, *deleting):
        thread.join(30)

    assert isinstance(answers[0], services.StillMerged), answers[0]
    assert Incident.objects.filter(pk=world["survivor"].pk).exists()
    assert IncidentMerge.objects.get().survivor_id == world["survivor"].pk
    assert Incident.objects.get(pk=world["merged"].pk).merged_into_id == world["survivor"].pk
