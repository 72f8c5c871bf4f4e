"""A version names the audience it was read as ("confidential.2": the ETag, the API's
`version_audience`, the admin's forms), and a write is compared with that audience's version, not
with the writer's at the moment they save. A writer whose Confidential access was taken away after
they read was compared with the count of readers without it, which can equal the number they read:
their stale edit passed, over a colleague's newer change. One given access after they read is
refused too, until they reload: their save, made as they are now, removed what they had not been
shown."""

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, DuplicatePair, Incident, IncidentMerge, Place, Response, Source
from tests.api_support import API, client_for, incident_url
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.form_support import form_fields


@pytest.fixture
def incident(keeper):
    """A published incident whose confidential claim was edited once: readers with Confidential
    access count two versions of it, readers without it one."""
    incident = make_incident(title="Repatriation at Dandong")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    make_claim(incident=incident, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
    edit_confidential_excerpt(keeper, incident, "81 (checked)")
    return incident


@pytest.fixture
def colleague():
    """A Reviewer without Confidential access, who changes what everyone on staff sees."""
    return make_user(roles.REVIEWER)


def read(user, incident) -> tuple[dict, str]:
    answer = client_for(user).get(incident_url(incident))
    assert answer.status_code == 200, answer.content
    return answer.json(), answer["ETag"]


def edit_confidential_excerpt(keeper, incident, excerpt: str) -> None:
    """The keeper's edit of the incident's confidential claim: a change only they are told of."""
    body, etag = read(keeper, incident)
    claims = [
        {"id": claim["id"], "source": claim["source"], "excerpt": excerpt}
        if claim["confidential"]
        else {"id": claim["id"]}
        for claim in body["claims"]
    ]
    answer = client_for(keeper).patch(incident_url(incident), {"claims": claims}, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 200, answer.content


def retitle(user, incident, title: str) -> None:
    _, etag = read(user, incident)
    answer = client_for(user).patch(incident_url(incident), {"title": title}, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 200, answer.content


def take_confidential_access(user) -> None:
    user.groups.remove(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))


def give_confidential_access(user) -> None:
    user.groups.add(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))


def saved_from_the_admin_form_opened_before(client, user, incident, access_change):
    """`user`'s Save of a new title on the incident's admin form, opened before `access_change(user)`."""
    client.force_login(user)
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    page = client.get(url)
    access_change(user)
    return client.post(url, form_fields(page.content.decode(), "incident_form") | {"title": "Renamed", "_save": "Save"})


def title_of(incident) -> str:
    return Incident.objects.get(pk=incident.pk).title


def confidential_excerpt(incident) -> str:
    return Claim.objects.get(incident=incident, confidential=True).excerpt


class TestTheApiTellsWhoseVersionItIs:
    @pytest.mark.parametrize(
        ("reader", "audience"),
        [("keeper", "confidential"), ("colleague", "staff"), (None, "public")],
    )
    def test_the_etag_and_the_body_name_the_audience(self, request, incident, reader, audience):
        user = request.getfixturevalue(reader) if reader else None

        body, etag = read(user, incident)

        assert body["version_audience"] == audience
        assert etag == f'"{audience}.{body["version"]}"'

    def test_the_counts_differ_where_a_hidden_change_moved_one(self, keeper, colleague, incident):
        assert read(keeper, incident)[0]["version"] == 2
        assert read(colleague, incident)[0]["version"] == 1


class TestAccessTakenAwayAfterTheRead:
    """The keeper reads version 2 (theirs); a colleague changes the title (the staff's count
    reaches 2 too); the keeper's access is taken away; their edit of version 2 is stale."""

    @pytest.fixture
    def read_before(self, keeper, colleague, incident):
        body, etag = read(keeper, incident)
        retitle(colleague, incident, "Repatriation at Dandong, 80 people")
        take_confidential_access(keeper)
        assert read(keeper, incident)[0]["version"] == body["version"]  # the count that let it pass
        return body, etag

    def test_if_match_is_refused_and_nothing_is_written(self, keeper, incident, read_before):
        _, etag = read_before

        answer = client_for(keeper).patch(
            incident_url(incident), {"title": "Stale title"}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 412, answer.content
        assert "access you no longer have" in answer.json()["detail"]
        assert title_of(incident) == "Repatriation at Dandong, 80 people"

    def test_the_body_version_and_its_audience_are_refused(self, keeper, incident, read_before):
        body, _ = read_before

        answer = client_for(keeper).patch(
            incident_url(incident),
            {"title": "Stale title", "version": body["version"], "version_audience": body["version_audience"]},
            format="json",
        )

        assert answer.status_code == 409, answer.content
        assert "access you no longer have" in answer.json()["detail"]
        assert title_of(incident) == "Repatriation at Dandong, 80 people"
        assert confidential_excerpt(incident) == "81 (checked)"

    def test_the_refusal_tells_nothing_of_the_hidden_count(self, keeper, incident, read_before):
        _, etag = read_before

        detail = (
            client_for(keeper)
            .patch(incident_url(incident), {"title": "Stale title"}, format="json", HTTP_IF_MATCH=etag)
            .json()["detail"]
        )

        assert "version" not in detail
        # Not the incident's public id, which may hold the digits (INC-001810).
        assert "81" not in detail.replace(incident.public_id, "")

    def test_the_admin_form_opened_before_is_refused(self, client, keeper, incident):
        answer = saved_from_the_admin_form_opened_before(client, keeper, incident, take_confidential_access)

        assert answer.status_code == 200
        assert "access you no longer have" in answer.content.decode()
        assert title_of(incident) == "Repatriation at Dandong"
        assert confidential_excerpt(incident) == "81 (checked)"

    def test_the_review_buttons_of_the_page_opened_before_are_refused(self, client, keeper, incident):
        Incident.objects.filter(pk=incident.pk).update(review_state="in_review")
        client.force_login(keeper)
        url = reverse("admin:incidents_incident_change", args=[incident.pk])
        reviewed = form_fields(client.get(url).content.decode())["reviewed_version"]
        assert reviewed.startswith("confidential.")
        take_confidential_access(keeper)

        client.post(
            reverse("admin:incidents_incident_changelist"),
            {"action": "publish", "_selected_action": [incident.pk], "reviewed_version": reviewed},
        )

        assert Incident.objects.get(pk=incident.pk).review_state == "in_review"

    @pytest.mark.parametrize(
        ("kind", "field", "saved"),
        [
            # Its count for readers without access is not the one read (a hidden link may move one
            # alone): refused, though nothing changed.
            ("sources", "title", False),
            # A place's count is one for all staff: compared as before, and saved.
            ("places", "name", True),
        ],
    )
    def test_a_record_read_with_access_is_compared_by_the_count_read(self, keeper, kind, field, saved):
        record = make_source(title="Dandong") if kind == "sources" else make_place(name="Dandong")
        url = f"{API}/{kind}/{record.pk}/"
        answer = client_for(keeper).get(url)
        take_confidential_access(keeper)

        written = client_for(keeper).patch(url, {field: "Dandong city"}, format="json", HTTP_IF_MATCH=answer["ETag"])

        assert written.status_code == (200 if saved else 412), written.content
        assert getattr(type(record).objects.get(pk=record.pk), field) == ("Dandong city" if saved else "Dandong")


class TestAccessGivenAfterTheRead:
    """The colleague reads version 1 (the staff's count: the confidential claim hidden); they are
    given Confidential access. Their save was compared as the staff's (it passed: a hidden change
    moves no count of theirs) but made as they are now, and what they were never shown went with
    it: the confidential claim their `claims` did not list, a colleague's newer link or cited
    source, a sensitive place's exact coordinates (found by an attack review). It is refused
    until they reload; the import, which keeps what its file does not name, compares it as read."""

    @pytest.fixture
    def read_before(self, keeper, colleague, incident):
        read_as_staff = read(colleague, incident)
        give_confidential_access(colleague)
        edit_confidential_excerpt(keeper, incident, "81 people")
        return read_as_staff

    def test_their_edit_is_refused_until_they_reload(self, colleague, incident, read_before):
        body, etag = read_before
        edit = {"title": "Repatriation at Dandong, 81", "claims": [{"id": body["claims"][0]["id"]}]}

        refused = client_for(colleague).patch(incident_url(incident), edit, format="json", HTTP_IF_MATCH=etag)

        assert refused.status_code == 412, refused.content
        assert "before you were given the access you have now" in refused.json()["detail"]
        assert (title_of(incident), confidential_excerpt(incident)) == ("Repatriation at Dandong", "81 people")
        _, etag = read(colleague, incident)
        assert etag.startswith('"confidential.')
        reloaded = client_for(colleague).patch(
            incident_url(incident), {"title": "Repatriation at Dandong, 81"}, format="json", HTTP_IF_MATCH=etag
        )
        assert reloaded.status_code == 200, reloaded.content
        assert (title_of(incident), confidential_excerpt(incident)) == ("Repatriation at Dandong, 81", "81 people")

    def test_from_the_admin_form_opened_before_the_confidential_claim_is_kept(self, client, colleague, incident):
        answer = saved_from_the_admin_form_opened_before(client, colleague, incident, give_confidential_access)

        assert answer.status_code == 200
        assert "before you were given the access you have now" in answer.content.decode()
        assert title_of(incident) == "Repatriation at Dandong"
        assert confidential_excerpt(incident) == "81 (checked)"

    def test_a_response_keeps_the_link_to_a_confidential_incident_a_colleague_added_since(self, keeper, colleague):
        public = make_incident(title="Repatriation at Dandong")
        hidden = make_incident(title="Arrest at Hyesan", confidential=True)
        response = Response.objects.create(
            organization=make_organization(name="MOFA"), kind="statement", date=date(2023, 9, 1)
        )
        response.incidents.add(public)
        url = f"{API}/responses/{response.pk}/"
        etag = read_etag(colleague, url)
        linked = client_for(keeper).patch(
            url,
            {"incidents": [public.public_id, hidden.public_id]},
            format="json",
            HTTP_IF_MATCH=read_etag(keeper, url),
        )
        assert linked.status_code == 200, linked.content
        give_confidential_access(colleague)

        answer = client_for(colleague).patch(
            url, {"description": "We deny it.", "incidents": [public.public_id]}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 412, answer.content
        assert set(Response.objects.get(pk=response.pk).incidents.all()) == {public, hidden}

    def test_a_source_keeps_citing_the_confidential_source_a_colleague_set_since(self, keeper, colleague):
        relay = make_source(title="Relay")
        url = f"{API}/sources/{relay.pk}/"
        etag = read_etag(colleague, url)
        informant = make_source(title="Informant testimony", confidential=True)
        cited = client_for(keeper).patch(
            url, {"cites": informant.pk}, format="json", HTTP_IF_MATCH=read_etag(keeper, url)
        )
        assert cited.status_code == 200, cited.content
        give_confidential_access(colleague)

        answer = client_for(colleague).patch(
            url, {"title": "Relay (Daily NK)", "cites": None}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 412, answer.content
        assert Source.objects.get(pk=relay.pk).cites_id == informant.pk

    def test_a_sensitive_places_exact_coordinates_survive_a_partner_made_staff_since(self):
        # A partner's account (not staff) reads a sensitive village at its country's coordinates
        # ("public.1"); a Reviewer corrects the exact ones (the public is told of no change); made
        # staff, the account sends back what it read. It wrote the country's coordinates as exact.
        country = make_place(name="Northland", kind="country", country="KP", latitude=40, longitude=127)
        village = make_place(name="Village one", parent=country, latitude=42.123457, longitude=129.876543)
        Place.objects.filter(pk=village.pk).update(sensitive=True, within_sensitive=True)
        partner = make_user(roles.ANALYST, is_staff=False)
        url = f"{API}/places/{village.pk}/"
        shown = client_for(partner).get(url)
        assert (shown.json()["latitude"], shown.json()["longitude"], shown["ETag"]) == (40.0, 127.0, '"public.1"')
        reviewer = make_user(roles.REVIEWER)
        corrected = client_for(reviewer).patch(
            url, {"latitude": 42.2, "longitude": 129.9}, format="json", HTTP_IF_MATCH=read_etag(reviewer, url)
        )
        assert corrected.status_code == 200, corrected.content
        assert read_etag(None, url) == '"public.1"'
        User.objects.filter(pk=partner.pk).update(is_staff=True)
        written = {"id", "version", "version_audience", "created_at", "updated_at", "path"}
        body = {key: value for key, value in shown.json().items() if key not in written}

        answer = client_for(partner).put(
            url, {**body, "alternate_names": ["Another name"]}, format="json", HTTP_IF_MATCH=shown["ETag"]
        )

        assert answer.status_code == 412, answer.content
        village.refresh_from_db()
        assert (village.latitude, village.longitude, village.alternate_names) == (
            Decimal("42.2"),
            Decimal("129.9"),
            [],
        )

    def test_a_change_they_could_see_since_still_refuses_it(self, keeper, colleague, incident, read_before):
        body, _ = read_before
        retitle(keeper, incident, "Repatriation at Dandong, corrected")

        answer = client_for(colleague).patch(
            incident_url(incident),
            {"title": "Stale title", "version": body["version"], "version_audience": "staff"},
            format="json",
        )

        assert answer.status_code == 409, answer.content
        assert title_of(incident) == "Repatriation at Dandong, corrected"


class TestIfMatchAndTheBodyNameOneVersion:
    def test_a_body_read_with_access_taken_since_is_refused_whatever_if_match_names(self, keeper, colleague, incident):
        # The keeper's HTTP library sends If-Match from its latest read ("staff.2", after their
        # access was taken away), the body the version the edit was made from ("confidential.2"):
        # compared as "staff.2", the stale edit overwrote the colleague's newer title.
        body, _ = read(keeper, incident)
        assert (body["version"], body["version_audience"]) == (2, "confidential")
        retitle(colleague, incident, "Repatriation at Dandong, 80 people")
        take_confidential_access(keeper)
        latest_etag = read(keeper, incident)[1]
        assert latest_etag == '"staff.2"'

        answer = client_for(keeper).patch(
            incident_url(incident),
            {"title": "Stale title", "version": body["version"], "version_audience": body["version_audience"]},
            format="json",
            HTTP_IF_MATCH=latest_etag,
        )

        assert answer.status_code == 409, answer.content
        assert (
            "Your body's version (confidential.2) is not the version your If-Match names (staff.2)"
            in (answer.json()["detail"])
        )
        assert title_of(incident) == "Repatriation at Dandong, 80 people"

    def test_a_bare_number_on_either_side_agrees_with_the_audience_the_other_names(self, colleague, incident):
        # A client from before versions named their audience sends a bare number on one side.
        for header, version in (('"staff.1"', {"version": 1}), ('"2"', {"version": 2, "version_audience": "staff"})):
            answer = client_for(colleague).patch(
                incident_url(incident),
                {"title": f"Renamed from {header}", **version},
                format="json",
                HTTP_IF_MATCH=header,
            )
            assert answer.status_code == 200, answer.content
        assert title_of(incident) == 'Renamed from "2"'


class TestNamedVersionsAreChecked:
    @pytest.mark.parametrize(
        ("header", "problem"),
        [('"secret.2"', "is not whose version"), ('"staff.x"', "names no version"), ('"staff.0"', "names no version")],
    )
    def test_a_garbled_if_match_is_a_400_naming_it(self, colleague, incident, header, problem):
        answer = client_for(colleague).patch(
            incident_url(incident), {"title": "Changed"}, format="json", HTTP_IF_MATCH=header
        )

        assert answer.status_code == 400, answer.content
        assert problem in answer.json()["If-Match"][0]
        assert title_of(incident) == "Repatriation at Dandong"

    def test_a_stale_one_is_refused_naming_the_version_to_reload_as_an_etag_does(self, keeper, colleague, incident):
        etag = read(colleague, incident)[1]
        retitle(keeper, incident, "Repatriation at Dandong, corrected")

        answer = client_for(colleague).patch(
            incident_url(incident), {"title": "Stale"}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 412, answer.content
        assert answer.json()["detail"].startswith(f"{incident.public_id} was changed by {keeper.username} at ")
        assert ': it is now at version "staff.2"; your If-Match' in answer.json()["detail"]
        assert read(colleague, incident)[1] == '"staff.2"'

    def test_one_never_reached_is_a_400_not_a_change_nobody_made(self, colleague, incident):
        # "INC-… was changed by someone else": no one had; a script's counter, which no reload cures.
        answer = client_for(colleague).patch(
            incident_url(incident), {"title": "Counted on"}, format="json", HTTP_IF_MATCH='"staff.99"'
        )

        assert answer.status_code == 400, answer.content
        assert list(answer.json()) == ["If-Match"]
        assert f"{incident.public_id} never had version 99" in answer.json()["If-Match"][0]

    def test_an_unknown_body_audience_is_a_400_naming_it(self, colleague, incident):
        answer = client_for(colleague).patch(
            incident_url(incident), {"title": "Changed", "version": 1, "version_audience": "secret"}, format="json"
        )

        assert answer.status_code == 400, answer.content
        assert "version_audience" in answer.json()
        assert title_of(incident) == "Repatriation at Dandong"

    def test_a_bare_number_is_still_compared_with_the_writers_own_count(self, colleague, incident):
        answer = client_for(colleague).patch(
            incident_url(incident), {"title": "Changed"}, format="json", HTTP_IF_MATCH='"1"'
        )

        assert answer.status_code == 200, answer.content
        assert title_of(incident) == "Changed"


class TestAMergeConfirmedAfterAccessWasTakenAway:
    """A Reviewer reads a pair with Confidential access, loses it, then confirms the merge: the
    versions they confirmed were counted for an audience they no longer belong to."""

    @pytest.fixture
    def pair(self):
        survivor = make_incident(title="80 sent back from Tumen")
        merged = make_incident(title="Repatriation at Tumen")
        make_claim(incident=merged, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
        return DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)

    def test_through_the_api_nothing_is_merged(self, keeper, pair):
        versions = {}
        for side, incident in (("survivor", pair.incident_a), ("merged", pair.incident_b)):
            body, _ = read(keeper, incident)
            versions[f"{side}_version"] = body["version"]
        take_confidential_access(keeper)

        answer = client_for(keeper).post(
            f"{API}/duplicates/{pair.pk}/merge/", {**versions, "version_audience": "confidential"}, format="json"
        )

        assert answer.status_code == 409, answer.content
        assert "access you no longer have" in answer.json()["detail"]
        assert not IncidentMerge.objects.exists()

    def test_from_the_admins_confirmation_page_nothing_is_merged(self, client, keeper, pair):
        client.force_login(keeper)
        url = reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])
        confirmed = form_fields(client.get(url).content.decode())
        assert confirmed["survivor_version"].startswith("confidential.")
        take_confidential_access(keeper)

        answer = client.post(url, confirmed, follow=True)

        assert "Nothing was merged. You read" in answer.content.decode()
        assert not IncidentMerge.objects.exists()


class TestACopyHeldIsNotSentAgain:
    """A detail answers 304, no body, to an If-None-Match naming its ETag: a partner tool checking
    the copy it holds reads nothing again; a change, or a copy read as another audience, is sent."""

    @pytest.mark.parametrize("kind", ["incident", "source"])
    def test_the_version_held_answers_304_and_a_change_the_new_copy(self, colleague, incident, kind):
        record = incident if kind == "incident" else make_source(title="Daily NK")
        url = incident_url(record) if kind == "incident" else f"{API}/sources/{record.pk}/"
        etag = client_for(None).get(url)["ETag"]

        held = client_for(None).get(url, HTTP_IF_NONE_MATCH=etag)

        assert held.status_code == 304
        assert (held.content, held["ETag"]) == (b"", etag)
        change = {"title": "Changed"}
        answer = client_for(colleague).patch(url, change, format="json", HTTP_IF_MATCH=read_etag(colleague, url))
        assert answer.status_code == 200, answer.content
        changed = client_for(None).get(url, HTTP_IF_NONE_MATCH=etag)
        assert changed.status_code == 200
        assert changed.json()["title"] == "Changed"
        assert changed["ETag"] != etag

    def test_a_copy_read_as_another_audience_is_sent_again(self, colleague, incident):
        etag = client_for(colleague).get(incident_url(incident))["ETag"]
        assert etag == '"staff.1"'

        anonymous = client_for(None).get(incident_url(incident), HTTP_IF_NONE_MATCH=etag)

        assert anonymous.status_code == 200
        assert anonymous["ETag"] == '"public.1"'


def read_etag(user, url: str) -> str:
    answer = client_for(user).get(url)
    assert answer.status_code == 200, answer.content
    return answer["ETag"]


@pytest.mark.parametrize("reader", ["anonymous", "analyst", "keeper"])
def test_on_demo_data_every_detail_names_the_version_its_list_row_gives_and_answers_304_to_it(request, reader):
    """Messy generated data (drafts, confidential incidents and claims, repeated names): each incident
    a reader lists has, on its detail, the ETag its row's `version_audience` and `version` name, and
    that ETag sent back is a copy still held."""
    call_command("generate_demo_data", incidents=60, seed=11, batch_size=30, stdout=StringIO())
    user = {
        "anonymous": None,
        "analyst": make_user(roles.ANALYST),
        "keeper": request.getfixturevalue("keeper"),
    }[reader]
    listed = client_for(user).get(f"{API}/incidents/", {"page_size": 200})
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert rows and {row["version_audience"] for row in rows} == {
        {"anonymous": "public", "analyst": "staff", "keeper": "confidential"}[reader]
    }
    for row in rows:
        url = f"{API}/incidents/{row['public_id']}/"
        etag = client_for(user).get(url)["ETag"]
        assert etag == f'"{row["version_audience"]}.{row["version"]}"'
        assert client_for(user).get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
