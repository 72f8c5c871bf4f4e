"""An incident shows what it links to: its sources' titles (the API's `source_title`, the CSV's
`sources`), its organizations' names (`organization_name`, `perpetrators`) and the independent
origins its claims' sources reach up their `cites` chains (`corroboration`). A change of those is a
new version of the incident, so that an incremental sync (`updated_since`, in the API and the CSV)
reads it again and a partner's copy does not keep an old title, name or count for good. Readers
without Confidential access are told it only where they see it changed: never for a confidential
claim, nor for a source that was and stays confidential."""

import csv
import io

import pytest
from django.utils import timezone

from incidents.models import IncidentType, Involvement
from tests.api_support import API, client_for, incident_url, public_ids
from tests.factories import make_claim, make_incident, make_organization, make_source
from tests.test_csv_export_rows import export_rows_a_refresh_makes, kept_export_rows


def read(user, record_url: str) -> tuple[dict, str]:
    answer = client_for(user).get(record_url)
    assert answer.status_code == 200, answer.content
    return answer.json(), answer["ETag"]


def edit(user, record_url: str, body: dict) -> None:
    _, etag = read(user, record_url)
    answer = client_for(user).patch(record_url, body, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 200, answer.content


def source_url(source) -> str:
    return f"{API}/sources/{source.pk}/"


def versions(incident, *users) -> dict:
    """The version each of `users` (None: the public) is told of `incident`."""
    return {user: read(user, incident_url(incident))[0]["version"] for user in users}


def csv_row(user, incident) -> dict[str, str]:
    answer = client_for(user).get(f"{API}/incidents/", {"format": "csv"})
    assert answer.status_code == 200
    text = b"".join(answer.streaming_content).decode("utf-8-sig")
    (row,) = [row for row in csv.DictReader(io.StringIO(text)) if row["public_id"] == incident.public_id]
    return row


def synced_since(user, since) -> set[str]:
    return public_ids(client_for(user).get(f"{API}/incidents/", {"updated_since": since.isoformat()}))


def relayed_beside_another_origin():
    """A source, another, and an incident with a claim of each: of the first through a relay."""
    source, origin = make_source(title="RFA story"), make_source(title="HRW report")
    incident = make_incident()
    make_claim(incident=incident, source=make_source(title="UCA News story", cites=source))
    make_claim(incident=incident, source=origin)
    return source, origin, incident


class TestASourceRenamed:
    def test_its_incidents_move_for_every_reader_and_sync_again(self, keeper, reviewer):
        source = make_source(title="Daily NK: 50 returned")
        incident = make_incident()
        make_claim(incident=incident, source=source)
        before = versions(incident, None, reviewer, keeper)
        since = timezone.now()

        edit(keeper, source_url(source), {"title": "Daily NK: 50 North Koreans returned"})

        assert versions(incident, None, reviewer, keeper) == {user: version + 1 for user, version in before.items()}
        assert incident.public_id in synced_since(None, since)
        body, _ = read(None, incident_url(incident))
        assert [claim["source_title"] for claim in body["claims"]] == ["Daily NK: 50 North Koreans returned"]
        # The CSV's row holds the new title and the version the API tells.
        row = csv_row(None, incident)
        assert "Daily NK: 50 North Koreans returned" in row["sources"]
        assert row["version"] == str(before[None] + 1)

    def test_an_incident_citing_it_in_confidence_moves_only_for_readers_with_access(self, keeper, reviewer):
        source = make_source(title="Open report")
        incident = make_incident()
        make_claim(incident=incident, source=source, confidential=True)
        before = versions(incident, None, reviewer, keeper)
        since = timezone.now()

        edit(keeper, source_url(source), {"title": "Open report, 2023"})

        assert versions(incident, None, reviewer, keeper) == before | {keeper: before[keeper] + 1}
        assert incident.public_id not in synced_since(reviewer, since)
        assert incident.public_id in synced_since(keeper, since)
        assert csv_row(None, incident)["version"] == str(before[None])
        assert csv_row(keeper, incident)["version"] == str(before[keeper] + 1)

    def test_a_confidential_source_renamed_moves_only_for_readers_with_access(self, keeper, reviewer):
        informant = make_source(title="Informant A", kind="testimony", confidential=True)
        incident = make_incident()
        make_claim(incident=incident, source=make_source(title="Public report"))
        make_claim(incident=incident, source=informant)
        before = versions(incident, None, reviewer, keeper)

        edit(keeper, source_url(informant), {"title": "Informant B"})

        assert versions(incident, None, reviewer, keeper) == before | {keeper: before[keeper] + 1}

    def test_a_change_incidents_do_not_show_moves_none(self, keeper):
        source = make_source(title="Daily NK: 50 returned")
        incident = make_incident()
        make_claim(incident=incident, source=source)
        before = versions(incident, None, keeper)

        edit(keeper, source_url(source), {"notes": "Called the editor"})

        assert versions(incident, None, keeper) == before


class TestWhatASourceCitesChanged:
    def test_the_incidents_of_its_relays_move_with_their_origins(self, keeper, reviewer):
        """A relay's claim reaches the source's origin: citing another changes the incident's count."""
        source, origin, incident = relayed_beside_another_origin()
        before = versions(incident, None, reviewer, keeper)
        assert read(None, incident_url(incident))[0]["corroboration"]["independent_origins"] == 2

        edit(keeper, source_url(source), {"cites": origin.pk})

        assert read(None, incident_url(incident))[0]["corroboration"]["independent_origins"] == 1
        assert versions(incident, None, reviewer, keeper) == {user: version + 1 for user, version in before.items()}

    def test_past_a_confidential_relay_they_see_no_change(self, keeper, reviewer):
        """Their chain ends at the public source citing a confidential one: nothing beyond it shows."""
        origin, source = make_source(title="HRW report"), make_source(title="Informant", confidential=True)
        relay = make_source(title="UCA News story", cites=source)
        incident = make_incident()
        make_claim(incident=incident, source=relay)
        before = versions(incident, None, reviewer, keeper)

        edit(keeper, source_url(source), {"cites": origin.pk})

        assert versions(incident, None, reviewer, keeper) == before | {keeper: before[keeper] + 1}


class TestASourceMadeConfidential:
    def test_an_incident_citing_it_in_confidence_moves_only_for_readers_with_access(self, keeper, reviewer):
        source = make_source(title="Open report")
        incident = make_incident()
        make_claim(incident=incident, source=make_source(title="Public report"))
        make_claim(incident=incident, source=source, confidential=True)
        before = versions(incident, None, reviewer, keeper)

        edit(keeper, source_url(source), {"confidential": True})

        assert versions(incident, None, reviewer, keeper) == before | {keeper: before[keeper] + 1}


class TestAnOrganizationRenamed:
    @pytest.mark.parametrize("role", ["perpetrator", "receiving_state"])
    def test_its_incidents_move_for_every_reader_and_sync_again(self, keeper, reviewer, role):
        organization = make_organization(name="Government of China")
        incident = make_incident()
        Involvement.objects.create(incident=incident, organization=organization, role=role)
        before = versions(incident, None, reviewer)
        since = timezone.now()

        edit(
            keeper,
            f"{API}/organizations/{organization.pk}/",
            {"name": "Government of the People's Republic of China"},
        )

        assert versions(incident, None, reviewer) == {user: version + 1 for user, version in before.items()}
        assert incident.public_id in synced_since(None, since)
        body, _ = read(None, incident_url(incident))
        names = [involvement["organization_name"] for involvement in body["involvements"]]
        assert names == ["Government of the People's Republic of China"]
        row = csv_row(None, incident)
        assert row["version"] == str(before[None] + 1)
        assert ("People's Republic" in (row["perpetrators"] or "")) == (role == "perpetrator")
        # Every cell, the change times too, as a refresh from nothing makes it.
        assert kept_export_rows() == export_rows_a_refresh_makes()

    def test_the_incidents_of_its_public_relays_move_for_every_reader(self, keeper, reviewer):
        """Their chain now ends at the relay: its claim is its own origin, as they count them."""
        source, _, incident = relayed_beside_another_origin()
        before = versions(incident, None, reviewer, keeper)

        edit(keeper, source_url(source), {"confidential": True})

        assert versions(incident, None, reviewer, keeper) == {user: version + 1 for user, version in before.items()}


class TestATypeGivenAnotherSlug:
    def test_its_incidents_move_for_every_reader_and_sync_again(self, keeper, reviewer):
        """The API's `incident_type` and the CSV's `type` name a type by its slug."""
        incident = make_incident()
        incident_type = incident.incident_type
        before = versions(incident, None, reviewer)
        since = timezone.now()

        edit(keeper, f"{API}/incident-types/{incident_type.pk}/", {"slug": "refoulement"})

        assert versions(incident, None, reviewer) == {user: version + 1 for user, version in before.items()}
        assert incident.public_id in synced_since(None, since)
        assert read(None, incident_url(incident))[0]["incident_type"] == "refoulement"
        assert csv_row(None, incident)["type"] == "refoulement"
        assert kept_export_rows() == export_rows_a_refresh_makes()

    def test_its_sub_types_move_too(self, keeper):
        """They name it as their `parent` by its slug: a stale edit of one meets a version conflict."""
        parent = make_incident().incident_type
        child = IncidentType.objects.create(slug="pushback", name="Pushback", parent=parent)
        child_url = f"{API}/incident-types/{child.pk}/"
        body, etag = read(keeper, child_url)

        edit(keeper, f"{API}/incident-types/{parent.pk}/", {"slug": "refoulement"})

        now_body, _ = read(keeper, child_url)
        assert (now_body["parent"], now_body["version"]) == ("refoulement", body["version"] + 1)
        stale = client_for(keeper).put(child_url, body, format="json", HTTP_IF_MATCH=etag)
        assert stale.status_code == 412, stale.content


class TestASourceGivenAConfidentialSourceToCite:
    """A public source given a confidential source to cite (or one confidential source for another)
    shows readers without Confidential access nothing new: its `cites` reads null before and after,
    and their chain ends at it, so the incidents' independent origins stay as they count them."""

    @pytest.mark.parametrize("cited_before", [None, "Informant A"])
    def test_its_incidents_move_only_for_readers_with_access(self, keeper, reviewer, cited_before):
        source = make_source(
            title="RFA story",
            cites=None if cited_before is None else make_source(title=cited_before, confidential=True),
        )
        informant = make_source(title="Informant B", kind="testimony", confidential=True)
        relay = make_source(title="UCA News story", cites=source)
        incident, relayed = make_incident(), make_incident()
        make_claim(incident=incident, source=source)
        make_claim(incident=relayed, source=relay)
        before = {record: versions(record, None, reviewer, keeper) for record in (incident, relayed)}
        source_before = {user: read(user, source_url(source))[0]["version"] for user in (None, reviewer)}
        since = timezone.now()

        edit(keeper, source_url(source), {"cites": informant.pk})

        # The source itself is told no new version (its `cites` reads null to them, as before) ...
        assert {user: read(user, source_url(source))[0]["version"] for user in (None, reviewer)} == source_before
        # ... and neither are the incidents citing it or its relay.
        for record in (incident, relayed):
            assert versions(record, None, reviewer, keeper) == before[record] | {keeper: before[record][keeper] + 1}
            assert record.public_id not in synced_since(reviewer, since)
            assert record.public_id in synced_since(keeper, since)
        assert kept_export_rows() == export_rows_a_refresh_makes()

    def test_in_place_of_a_public_one_it_moves_for_every_reader(self, keeper, reviewer):
        """Their chain, which ran on to the public source cited, now ends at it: they see it change."""
        source = make_source(title="RFA story", cites=make_source(title="HRW report"))
        incident = make_incident()
        make_claim(incident=incident, source=source)
        make_claim(incident=incident, source=make_source(title="Daily NK story"))
        before = versions(incident, None, reviewer, keeper)

        edit(keeper, source_url(source), {"cites": make_source(title="Informant", confidential=True).pk})

        assert versions(incident, None, reviewer, keeper) == {user: version + 1 for user, version in before.items()}
