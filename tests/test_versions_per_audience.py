"""An incident's version and change time per audience: an edit of what only readers with
Confidential access see (a confidential claim's excerpt, a confidential claim added, a confidential
source cited) moves neither the version, the change time, the ETag nor the incremental sync of
anyone without that access, in the API, the CSV export and the releases; an edit they can see moves
them all. A writer without that access edits by the version they are told: a hidden change since
they read neither refuses their edit nor is overwritten by it, and a change they can see still does."""

import csv
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from incidents.models import Claim
from tests.api_support import API, client_for, etag_version, incident_url, public_ids
from tests.factories import make_claim, make_incident, make_source


@pytest.fixture
def incident():
    """A published incident with a public claim and an informant's confidential one."""
    incident = make_incident(title="Repatriation at Dandong")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    make_claim(incident=incident, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
    return incident


def read(user, incident) -> tuple[dict, str]:
    answer = client_for(user).get(incident_url(incident))
    assert answer.status_code == 200, answer.content
    return answer.json(), answer["ETag"]


def told(user, incident) -> tuple[int, str, str]:
    """The version, change time and ETag `user` is told of `incident`."""
    body, etag = read(user, incident)
    return body["version"], body["updated_at"], etag


def edit(user, incident, body: dict) -> dict:
    """`body` sent as `user`'s edit of `incident`, from the version they read."""
    _, etag = read(user, incident)
    answer = client_for(user).patch(incident_url(incident), body, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 200, answer.content
    return answer.json()


def claims_with(user, incident, **changes_of_confidential) -> list[dict]:
    """The claims `user` reads of `incident`, the confidential one changed by `changes_of_confidential`."""
    claims, _ = read(user, incident)
    return [
        {
            "id": claim["id"],
            "source": claim["source"],
            "excerpt": claim["excerpt"],
            "confidential": claim["confidential"],
        }
        | (changes_of_confidential if claim["confidential"] else {})
        for claim in claims["claims"]
    ]


def edit_confidential_excerpt(keeper, incident, excerpt="81 people, 30 of them children"):
    edit(keeper, incident, {"claims": claims_with(keeper, incident, excerpt=excerpt)})


def synced_since(user, since) -> set[str]:
    return public_ids(client_for(user).get(f"{API}/incidents/", {"updated_since": since.isoformat()}))


def csv_versions(user, incident) -> tuple[str, str]:
    answer = client_for(user).get(f"{API}/incidents/", {"format": "csv"})
    assert answer.status_code == 200
    text = b"".join(answer.streaming_content).decode("utf-8-sig")
    (row,) = [row for row in csv.DictReader(io.StringIO(text)) if row["public_id"] == incident.public_id]
    return row["version"], row["updated_at"]


class TestReadersWithoutConfidentialAccess:
    def test_a_confidential_excerpt_edited_moves_nothing_they_are_told(self, keeper, reviewer, incident):
        before = {user: told(user, incident) for user in (None, reviewer)}
        since = timezone.now()

        edit_confidential_excerpt(keeper, incident)

        assert {user: told(user, incident) for user in (None, reviewer)} == before
        assert incident.public_id not in synced_since(None, since)
        assert incident.public_id not in synced_since(reviewer, since)

    @pytest.mark.parametrize("confidential_source", [False, True], ids=["confidential claim", "confidential source"])
    def test_a_claim_they_may_not_see_added_moves_nothing_they_are_told(self, keeper, incident, confidential_source):
        source = make_source(title="Second informant", confidential=confidential_source)
        before = told(None, incident)

        edit(
            keeper,
            incident,
            {
                "claims": [
                    *claims_with(keeper, incident),
                    {"source": source.pk, "excerpt": "Seen at the border", "confidential": not confidential_source},
                ]
            },
        )

        assert Claim.objects.filter(incident=incident, source=source).exists()
        assert told(None, incident) == before

    def test_an_edit_they_can_see_moves_everything_they_are_told(self, keeper, incident):
        version, updated_at, etag = told(None, incident)
        since = timezone.now()

        edit(keeper, incident, {"title": "Repatriation at Dandong, corrected"})

        now_version, now_updated_at, now_etag = told(None, incident)
        assert now_version == version + 1
        assert now_updated_at > updated_at
        assert now_etag == f'"public.{now_version}"' != etag
        assert incident.public_id in synced_since(None, since)

    def test_a_public_claim_edited_after_a_hidden_change_moves_their_version_by_one(self, keeper, incident):
        version, _, _ = told(None, incident)
        edit_confidential_excerpt(keeper, incident)

        # Every claim sent back as it was: each is saved again, and nothing they see changed.
        edit(keeper, incident, {"claims": claims_with(keeper, incident)})
        assert told(None, incident)[0] == version
        claims = [
            claim | ({"excerpt": "About 80 people"} if not claim["confidential"] else {})
            for claim in claims_with(keeper, incident)
        ]
        edit(keeper, incident, {"claims": claims})

        assert told(None, incident)[0] == version + 1

    def test_the_csv_export_tells_them_their_version_and_time(self, keeper, incident):
        before = csv_versions(None, incident)

        edit_confidential_excerpt(keeper, incident)
        assert csv_versions(None, incident) == before
        since = timezone.now()

        edit(keeper, incident, {"title": "Repatriation at Dandong, corrected"})
        version, updated_at = csv_versions(None, incident)
        assert int(version) == int(before[0]) + 1
        assert updated_at > since.astimezone(timezone.UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def test_the_csv_sync_leaves_out_a_hidden_change(self, keeper, incident):
        since = timezone.now()
        edit_confidential_excerpt(keeper, incident)
        answer = client_for().get(f"{API}/incidents/", {"format": "csv", "updated_since": since.isoformat()})
        text = b"".join(answer.streaming_content).decode("utf-8-sig")
        assert incident.public_id not in text

    def test_a_release_lists_an_incident_updated_only_for_a_change_the_public_sees(self, keeper, incident):
        release(keeper)
        edit_confidential_excerpt(keeper, incident)
        assert changes(release(keeper)) == []

        edit(keeper, incident, {"title": "Repatriation at Dandong, corrected"})
        assert changes(release(keeper)) == [{"public_id": incident.public_id, "change": "updated", "merged_into": ""}]


class TestReadersWithConfidentialAccess:
    def test_every_change_moves_what_they_are_told(self, keeper, incident):
        version, updated_at, _ = told(keeper, incident)
        since = timezone.now()

        edit_confidential_excerpt(keeper, incident)

        now_version, now_updated_at, now_etag = told(keeper, incident)
        assert (now_version, now_etag) == (version + 1, f'"confidential.{version + 1}"')
        assert now_updated_at > updated_at
        assert incident.public_id in synced_since(keeper, since)
        assert csv_versions(keeper, incident)[0] == str(version + 1)


class TestWritersWithoutConfidentialAccess:
    def test_a_hidden_change_since_they_read_neither_refuses_their_edit_nor_is_overwritten(
        self, keeper, reviewer, incident
    ):
        _, etag = read(reviewer, incident)
        edit_confidential_excerpt(keeper, incident, excerpt="Kept by the keeper")

        answer = client_for(reviewer).patch(
            incident_url(incident),
            {"title": "Repatriation at Dandong, corrected", "claims": claims_with(reviewer, incident)},
            format="json",
            HTTP_IF_MATCH=etag,
        )

        assert answer.status_code == 200, answer.content
        assert etag_version(answer["ETag"]) == etag_version(etag) + 1
        hidden = Claim.objects.get(incident=incident, confidential=True)
        assert hidden.excerpt == "Kept by the keeper"

    def test_the_body_version_they_read_is_accepted_after_a_hidden_change(self, keeper, reviewer, incident):
        version, _, _ = told(reviewer, incident)
        edit_confidential_excerpt(keeper, incident)

        answer = client_for(reviewer).patch(
            incident_url(incident), {"people_count": 90, "version": version}, format="json"
        )

        assert answer.status_code == 200, answer.content
        assert answer.json()["version"] == version + 1

    def test_a_stale_edit_after_a_change_they_can_see_is_still_refused(self, keeper, reviewer, incident):
        _, etag = read(reviewer, incident)
        edit(keeper, incident, {"title": "Repatriation at Dandong, corrected"})

        answer = client_for(reviewer).patch(
            incident_url(incident), {"title": "Another title"}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 412
        assert read(reviewer, incident)[0]["title"] == "Repatriation at Dandong, corrected"


def release(user) -> dict:
    call_command("release", user=user.username, stdout=io.StringIO())
    return client_for().get(f"{API}/releases/").json()["results"][0]


def changes(listed: dict) -> list[dict]:
    (changes_file,) = [release_file for release_file in listed["files"] if release_file["name"] == "CHANGES.csv"]
    content = b"".join(client_for().get(changes_file["url"]).streaming_content)
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
