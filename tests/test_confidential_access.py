"""Who read the informant's testimony: every door that shows or exports confidential records leaves
one append-only access record, which reviewers with confidential access read and nobody can change."""

import io
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from incidents import roles
from incidents.duplicates import duplicate_pair_decide
from incidents.exports import stream_incidents_csv
from incidents.merges import incident_merge
from incidents.models import (
    AccessDoor,
    Claim,
    ConfidentialAccess,
    DuplicatePair,
    Incident,
    IncidentRevision,
    Response,
    Source,
)
from tests.api_support import API, client_for, incident_url, results
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
)
from tests.form_support import saved_unchanged

ACCESSES = reverse("admin:incidents_confidentialaccess_changelist")


def admin_url(obj, page: str = "change") -> str:
    return reverse(f"admin:incidents_{obj._meta.model_name}_{page}", args=[obj.pk])


def only_access() -> ConfidentialAccess:
    """The one access recorded so far (the test fails if there are more or none)."""
    (access,) = ConfidentialAccess.objects.all()
    return access


@pytest.fixture
def world():
    """Rita reviews with confidential access; Andy is an analyst without it; the records are a
    confidential incident, a published incident with a confidential claim, one with a claim from a
    confidential source (an informant), and a plain one."""

    class World:
        rita = make_user(roles.REVIEWER, confidential=True)
        andy = make_user(roles.ANALYST)
        secret = make_incident(
            title="Secret", confidential=True, date_start=date(2023, 8, 1), date_end=date(2023, 8, 1)
        )
        with_confidential_claim = make_incident(title="Claim", date_start=date(2023, 7, 1), date_end=date(2023, 7, 1))
        confidential_claim = make_claim(incident=with_confidential_claim, confidential=True)
        informant = make_source(title="Informant", kind="testimony", confidential=True)
        with_informant = make_incident(title="Informant's", date_start=date(2023, 6, 1), date_end=date(2023, 6, 1))
        informant_claim = make_claim(incident=with_informant, source=informant)
        plain = make_incident(title="Plain", date_start=date(2020, 1, 1), date_end=date(2020, 1, 1))
        plain_claim = make_claim(incident=plain)

    return World


class TestPublicPages:
    """Signed-in staff with confidential access see confidential records on the public pages too."""

    def test_browse_records_the_confidential_incidents_and_claims_of_its_page(self, client, world):
        # Each row shows the span of its claims' figures ("sources: 40-500"), the confidential
        # claims' too: only the confidential incidents were recorded.
        client.force_login(world.rita)
        assert client.get(reverse("public:browse")).status_code == 200
        access = only_access()
        assert (access.user, access.door, access.incident_ids, access.source_ids, access.path) == (
            world.rita,
            AccessDoor.SITE,
            [world.secret.pk],
            [world.informant.pk],
            reverse("public:browse"),
        )
        assert sorted(access.claim_ids) == sorted([world.confidential_claim.pk, world.informant_claim.pk])

    def test_an_incident_page_records_the_confidential_claims_and_sources_it_shows(self, client, world):
        client.force_login(world.rita)
        assert client.get(reverse("public:incident", args=[world.with_informant.public_id])).status_code == 200
        access = only_access()
        assert (access.door, access.incident_ids, access.claim_ids, access.source_ids) == (
            AccessDoor.SITE,
            [],
            [world.informant_claim.pk],
            [world.informant.pk],
        )

    def test_an_incident_page_records_the_confidential_sources_it_names_beside_its_claims(self, client, world):
        # A public claim's article relays an informant's testimony, and a response was reported by
        # one: the page shows both titles to staff with Confidential access, and recorded neither.
        relay = make_source(title="Daily NK relays it", cites=world.informant)
        make_claim(incident=world.plain, source=relay)
        reporter = make_source(title="Informant K's account", kind="testimony", confidential=True)
        make_response(incidents=[world.plain], source=reporter)
        client.force_login(world.rita)

        page = client.get(reverse("public:incident", args=[world.plain.public_id])).content.decode()

        assert "citing Informant" in page and "Informant K&#x27;s account" in page
        access = only_access()
        assert (access.incident_ids, access.claim_ids) == ([], [])
        assert sorted(access.source_ids) == sorted([world.informant.pk, reporter.pk])
        # Readers without access are shown neither, and leave no record.
        client.force_login(world.andy)
        page = client.get(reverse("public:incident", args=[world.plain.public_id])).content.decode()
        assert "Informant" not in page
        assert ConfidentialAccess.objects.count() == 1

    def test_the_map_data_records_every_confidential_record_it_holds(self, client, world):
        client.force_login(world.rita)
        assert client.get(reverse("public:incidents-geojson")).status_code == 200
        access = only_access()
        assert (access.door, access.incident_ids, access.source_ids) == (
            AccessDoor.SITE,
            [world.secret.pk],
            [world.informant.pk],
        )
        assert sorted(access.claim_ids) == sorted([world.confidential_claim.pk, world.informant_claim.pk])

    def test_the_maps_incidents_record_the_confidential_incidents_they_show(self, client, world):
        client.force_login(world.rita)
        assert client.get(reverse("public:map-data")).status_code == 200
        access = only_access()
        # Only where each is, its title and date: none of their claims.
        assert (access.door, access.incident_ids, access.claim_ids, access.source_ids) == (
            AccessDoor.SITE,
            [world.secret.pk],
            [],
            [],
        )

    @pytest.mark.parametrize("page", ["public:browse", "public:incidents-geojson", "public:map-data"])
    def test_readers_without_confidential_access_leave_no_record(self, client, world, page):
        assert client.get(reverse(page)).status_code == 200
        client.force_login(world.andy)
        assert client.get(reverse(page)).status_code == 200
        assert client.get(reverse("public:incident", args=[world.with_informant.public_id])).status_code == 200
        assert not ConfidentialAccess.objects.exists()


class TestAdminPages:
    def test_a_confidential_incident_page_is_recorded_with_reader_door_and_id(self, client, world):
        client.force_login(world.rita)
        assert client.get(admin_url(world.secret)).status_code == 200
        access = only_access()
        assert (access.user, access.door) == (world.rita, AccessDoor.ADMIN)
        assert (access.incident_ids, access.claim_ids, access.source_ids) == ([world.secret.pk], [], [])
        assert access.path == admin_url(world.secret)
        assert access.row_count is None and access.export_filters is None

    def test_the_page_of_a_public_incident_records_the_confidential_claims_it_shows(self, client, world):
        client.force_login(world.rita)
        client.get(admin_url(world.with_confidential_claim))
        client.get(admin_url(world.with_informant))
        first, second = ConfidentialAccess.objects.order_by("id")
        assert (first.incident_ids, first.claim_ids, first.source_ids) == ([], [world.confidential_claim.pk], [])
        assert (second.claim_ids, second.source_ids) == ([world.informant_claim.pk], [world.informant.pk])

    def test_history_and_source_pages_are_recorded(self, client, world):
        client.force_login(world.rita)
        assert client.get(admin_url(world.secret, "history")).status_code == 200
        assert client.get(admin_url(world.informant)).status_code == 200
        assert client.get(admin_url(world.informant, "history")).status_code == 200
        history, source, source_history = ConfidentialAccess.objects.order_by("id")
        assert history.incident_ids == [world.secret.pk] and history.path == admin_url(world.secret, "history")
        assert source.source_ids == source_history.source_ids == [world.informant.pk]

    def test_delete_confirmation_pages_are_recorded(self, client, world):
        client.force_login(world.rita)
        assert client.get(admin_url(world.with_informant, "delete")).status_code == 200
        assert client.get(admin_url(world.informant, "delete")).status_code == 200
        incident_page, source_page = ConfidentialAccess.objects.order_by("id")
        assert (incident_page.claim_ids, incident_page.source_ids) == ([world.informant_claim.pk], [world.informant.pk])
        assert incident_page.path == admin_url(world.with_informant, "delete")
        assert source_page.source_ids == [world.informant.pk]

    def test_a_delete_confirmation_records_the_confidential_records_that_protect_its_record(self, client, world):
        # An organization's confirmation lists, as what blocks its deletion, the testimony it
        # published, by its title; only the page's own record (an organization: none) was recorded.
        outlet = make_organization(name="Daily NK")
        testimony = make_source(title="Testimony of informant K-17", confidential=True, publisher=outlet)
        client.force_login(world.rita)
        page = client.get(admin_url(outlet, "delete")).content.decode()
        assert "Testimony of informant K-17" in page
        access = only_access()
        assert (access.source_ids, access.path) == ([testimony.pk], admin_url(outlet, "delete"))

    def test_delete_selected_records_the_confidential_records_its_confirmation_lists(self, client, world):
        # "Delete selected" of a report lists the informant's relay that cites it (protected) and
        # the incident's claim that would go with the informant: neither was recorded.
        report = make_source(title="NGO report on Hoeryong")
        relay = make_source(title="Informant K-17 relays the report", confidential=True, cites=report)
        client.force_login(world.rita)
        sources = reverse("admin:incidents_source_changelist")
        selected = {"action": "delete_selected", "_selected_action": [report.pk, world.informant.pk]}
        page = client.post(sources, selected).content.decode()
        assert "Informant K-17 relays the report" in page
        assert accesses() == [(sources, [], [world.informant_claim.pk], [world.informant.pk, relay.pk])]

    def test_a_confirmed_deletion_records_no_page_it_did_not_show(self, client, world):
        client.force_login(world.rita)
        assert client.post(admin_url(world.with_informant, "delete"), {"post": "yes"}).status_code == 302
        assert not Incident.objects.filter(pk=world.with_informant.pk).exists()
        assert not ConfidentialAccess.objects.exists()

    def test_the_incident_list_records_the_confidential_rows_of_its_page(self, client, world):
        client.force_login(world.rita)
        assert client.get(reverse("admin:incidents_incident_changelist")).status_code == 200
        assert only_access().incident_ids == [world.secret.pk]

    def test_pages_without_confidential_records_record_nothing(self, client, world):
        client.force_login(world.rita)
        client.get(admin_url(world.plain))
        client.get(admin_url(world.plain, "history"))
        client.get(reverse("admin:incidents_incident_changelist") + "?confidential__exact=0")
        # Andy is not shown the confidential claim on the same page, so nothing was read.
        client.force_login(world.andy)
        assert client.get(admin_url(world.with_confidential_claim)).status_code == 200
        client.get(reverse("admin:incidents_incident_changelist"))
        assert not ConfidentialAccess.objects.exists()

    def test_the_autocomplete_records_the_confidential_sources_it_offers(self, client, world):
        client.force_login(world.rita)
        search = {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": "Informant"}

        response = client.get(reverse("admin:autocomplete"), search)

        assert [result["text"] for result in response.json()["results"]] == [str(world.informant)]
        access = only_access()
        assert (access.user, access.door) == (world.rita, AccessDoor.ADMIN)
        assert (access.incident_ids, access.claim_ids, access.source_ids) == ([], [], [world.informant.pk])
        assert access.path == f"{reverse('admin:autocomplete')}?{urlencode(search)}"

    def test_the_autocomplete_of_incidents_records_the_confidential_ones_it_offers(self, client, world):
        client.force_login(world.rita)
        search = {"app_label": "incidents", "model_name": "response", "field_name": "incidents", "term": "Secret"}

        response = client.get(reverse("admin:autocomplete"), search)

        assert [result["id"] for result in response.json()["results"]] == [str(world.secret.pk)]
        assert only_access().incident_ids == [world.secret.pk]

    def test_the_autocomplete_offers_no_confidential_source_to_others_and_records_nothing(self, client, world):
        client.force_login(world.andy)
        search = {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": ""}

        offered = client.get(reverse("admin:autocomplete"), search).json()["results"]

        assert offered and str(world.informant.pk) not in [result["id"] for result in offered]
        assert not ConfidentialAccess.objects.exists()


def make_pair(first: Incident, second: Incident) -> DuplicatePair:
    incident_a, incident_b = sorted([first, second], key=lambda incident: incident.pk)
    return DuplicatePair.objects.create(incident_a=incident_a, incident_b=incident_b, score=0.9)


def make_response(*, incidents, source=None) -> Response:
    response = Response.objects.create(
        organization=make_organization(), kind="statement", date=date(2023, 9, 1), source=source
    )
    response.incidents.set(incidents)
    return response


def accesses() -> list[tuple[str, list[int], list[int], list[int]]]:
    """Every access recorded so far, oldest first: (path, incident ids, claim ids, source ids)."""
    return [
        (access.path, sorted(access.incident_ids), sorted(access.claim_ids), sorted(access.source_ids))
        for access in ConfidentialAccess.objects.order_by("id")
    ]


class TestAdminPagesOfOtherRecords:
    """The admin's pages of sources, responses, duplicate pairs, revisions and merges show the
    confidential incidents, claims and sources they link to, compare or propose: each records them."""

    def test_a_source_page_records_the_confidential_source_it_cites(self, client, world):
        relay = make_source(title="Relay", cites=world.informant)
        client.force_login(world.rita)

        page = client.get(admin_url(relay)).content.decode()
        client.get(admin_url(relay, "history"))

        assert "Informant" in page
        assert accesses() == [
            (admin_url(relay), [], [], [world.informant.pk]),
            # "Cites: — → Informant" in the entry of its creation.
            (admin_url(relay, "history"), [], [], [world.informant.pk]),
        ]

    def test_a_response_page_records_its_confidential_source_and_incidents_and_its_list_nothing(self, client, world):
        response = make_response(incidents=[world.secret, world.plain], source=world.informant)
        client.force_login(world.rita)

        page = client.get(admin_url(response)).content.decode()
        client.get(reverse("admin:incidents_response_changelist"))

        assert "Secret" in page and "Informant" in page
        # The list shows each response's organization, kind and date: nothing confidential.
        assert accesses() == [(admin_url(response), [world.secret.pk], [], [world.informant.pk])]

    def test_the_duplicate_pairs_list_and_pair_page_record_the_incidents_and_claims_they_compare(self, client, world):
        pair = make_pair(world.secret, world.with_informant)
        client.force_login(world.rita)

        client.get(reverse("admin:incidents_duplicatepair_changelist"))
        page = client.get(admin_url(pair)).content.decode()

        assert "Secret" in page and "Informant" in page
        assert accesses() == [
            (reverse("admin:incidents_duplicatepair_changelist"), [world.secret.pk], [], []),
            (admin_url(pair), [world.secret.pk], [world.informant_claim.pk], [world.informant.pk]),
        ]

    def test_the_revisions_list_and_page_record_the_incident_and_the_claims_proposed(self, client, world):
        retitled = IncidentRevision.objects.create(
            incident=world.secret,
            base_version=world.secret.version,
            changes={"data": {"title": "Secret, retold"}},
            needs_confidential_access=True,
        )
        recounted = IncidentRevision.objects.create(
            incident=world.with_informant,
            base_version=world.with_informant.version,
            changes={"claims": [{"id": world.informant_claim.pk, "source": world.informant.pk, "people_count": 12}]},
            needs_confidential_access=True,
        )
        client.force_login(world.rita)

        client.get(reverse("admin:incidents_incidentrevision_changelist"))
        retitled_page = client.get(admin_url(retitled)).content.decode()
        recounted_page = client.get(admin_url(recounted)).content.decode()

        assert "Secret, retold" in retitled_page and "Informant (" in recounted_page
        assert accesses() == [
            (reverse("admin:incidents_incidentrevision_changelist"), [world.secret.pk], [], []),
            (admin_url(retitled), [world.secret.pk], [], []),
            (admin_url(recounted), [], [world.informant_claim.pk], [world.informant.pk]),
        ]

    def test_a_public_incidents_history_records_the_confidential_incident_an_entry_names(self, client, world):
        make_pair(world.secret, world.plain)
        client.force_login(world.rita)

        page = client.get(admin_url(world.plain, "history")).content.decode()

        assert f"Duplicate pair ({world.secret})" in page
        assert accesses() == [(admin_url(world.plain, "history"), [world.secret.pk], [], [])]

    def test_the_merge_preview_merge_page_and_list_record_what_they_show(self, client, world):
        # The incident with the informant's claim merges into the plain one: the claim moves.
        pair = make_pair(world.plain, world.with_informant)
        preview = reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])
        client.force_login(world.rita)

        page = client.get(preview, {"survivor": world.plain.public_id}).content.decode()
        merge = incident_merge(user=world.rita, pair=pair, survivor=world.plain.public_id)
        merge_page = client.get(admin_url(merge)).content.decode()
        client.get(reverse("admin:incidents_incidentmerge_changelist"))

        assert "Informant" in page and "Informant" in merge_page
        shown = ([], [world.informant_claim.pk], [world.informant.pk])
        assert accesses() == [(f"{preview}?survivor={world.plain.public_id}", *shown), (admin_url(merge), *shown)]

    def test_a_list_is_one_record_of_every_confidential_id_on_its_page_in_a_fixed_number_of_queries(
        self, client, world
    ):
        client.force_login(world.rita)
        pairs = reverse("admin:incidents_duplicatepair_changelist")
        client.get(pairs)  # the session's first read, and anything else done once

        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(pairs).status_code == 200
            return len(captured)

        make_pair(world.secret, world.plain)
        with_one = queries()
        for _ in range(4):
            make_pair(make_incident(confidential=True), make_incident(confidential=True))
        assert queries() == with_one
        listed = ConfidentialAccess.objects.order_by("id").last()
        assert len(listed.incident_ids) == 9 and world.secret.pk in listed.incident_ids
        assert ConfidentialAccess.objects.count() == 2

    @pytest.mark.parametrize("role", [roles.VIEWER, roles.ANALYST, roles.REVIEWER])
    def test_a_reader_without_confidential_access_neither_sees_them_nor_leaves_a_record(self, client, world, role):
        # A Viewer reads every record's page read-only, where a link shows the linked record's name.
        relay = make_source(title="Relay", cites=world.informant)
        response = make_response(incidents=[world.secret, world.plain], source=world.informant)
        make_pair(world.secret, world.plain)
        public_pair = make_pair(world.plain, world.with_confidential_claim)
        merged_pair = make_pair(world.plain, world.with_informant)
        recounted = IncidentRevision.objects.create(
            incident=world.with_confidential_claim,
            base_version=world.with_confidential_claim.version,
            changes={"data": {"title": "Claim, recounted"}},
        )
        merge = incident_merge(
            user=make_user(roles.REVIEWER, confidential=True), pair=merged_pair, survivor=world.plain.public_id
        )
        client.force_login(make_user(role))

        pages = [
            admin_url(relay),
            admin_url(relay, "history"),
            admin_url(response),
            admin_url(response, "history"),
            reverse("admin:incidents_response_changelist"),
            reverse("admin:incidents_duplicatepair_changelist"),
            admin_url(public_pair),
            reverse("admin:incidents_incidentrevision_changelist"),
            admin_url(recounted),
            admin_url(world.plain, "history"),
            reverse("admin:incidents_incidentmerge_changelist"),
            admin_url(merge),
        ]
        for url in pages:
            page = client.get(url)
            assert page.status_code == 200, url
            assert "Secret" not in page.content.decode() and "Informant<" not in page.content.decode(), url
        assert not ConfidentialAccess.objects.exists()


class TestApi:
    def test_an_account_that_is_not_staff_reads_nothing_confidential_whatever_its_groups(self, world):
        # Only staff pass a second factor: a partner tool's account given the group by mistake, its
        # password stolen, must not open the informants' records.
        partner = make_user(None, confidential=True)
        listed = {incident["public_id"] for incident in results(client_for(partner).get(f"{API}/incidents/"))}
        informants = client_for(partner).get(incident_url(world.with_informant)).json()

        assert world.secret.public_id not in listed and world.plain.public_id in listed
        assert informants["claims"] == [], informants["corroboration"]
        assert client_for(partner).get(f"{API}/sources/{world.informant.pk}/").status_code == 404
        staff = make_user(roles.VIEWER, confidential=True)
        assert world.secret.public_id in {i["public_id"] for i in results(client_for(staff).get(f"{API}/incidents/"))}

    def test_a_source_citing_a_confidential_one_records_it_in_its_detail_and_list(self, world):
        # That a public article relays an informant's testimony is shown by the testimony's id in
        # `cites`, as the admin's source page shows it, which records it; the API recorded nothing
        # (found by an attack review).
        since = timezone.now()
        relay = make_source(title="Daily NK relays it", cites=world.informant)
        client = client_for(world.rita)

        detail = client.get(f"{API}/sources/{relay.pk}/")
        listed = client.get(f"{API}/sources/", {"updated_since": since.isoformat()})

        assert detail.json()["cites"] == world.informant.pk
        assert [source["id"] for source in results(listed)] == [relay.pk]
        recorded = [(access.path, access.source_ids) for access in ConfidentialAccess.objects.order_by("id")]
        assert recorded == [
            (f"{API}/sources/{relay.pk}/", [world.informant.pk]),
            (listed.wsgi_request.get_full_path(), [world.informant.pk]),
        ]

    def test_a_merge_and_its_undo_record_the_confidential_incidents_they_name(self, world):
        other = make_incident(title="Secret again", confidential=True, date_start=date(2023, 8, 1))
        pair = DuplicatePair.objects.create(incident_a=world.secret, incident_b=other, score=0.9)
        client = client_for(world.rita)

        merged = client.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json")
        undone = client.post(f"{API}/incidents/{merged.json()['merged']}/unmerge/", {}, format="json")

        assert (merged.status_code, undone.status_code) == (201, 200)
        recorded = [(access.path, sorted(access.incident_ids)) for access in ConfidentialAccess.objects.order_by("id")]
        both = sorted([world.secret.pk, other.pk])
        assert recorded == [
            (f"{API}/duplicates/{pair.pk}/merge/", both),
            (f"{API}/incidents/{merged.json()['merged']}/unmerge/", both),
        ]

    def test_the_revisions_list_and_detail_record_the_incident_and_the_claims_proposed(self, world):
        recounted = IncidentRevision.objects.create(
            incident=world.with_informant,
            base_version=world.with_informant.version,
            changes={"claims": [{"id": world.informant_claim.pk, "source": world.informant.pk, "people_count": 12}]},
            needs_confidential_access=True,
        )
        retitled = IncidentRevision.objects.create(
            incident=world.secret,
            base_version=world.secret.version,
            changes={"data": {"title": "Secret, retold"}},
            needs_confidential_access=True,
        )
        client = client_for(world.rita)

        listed = client.get(f"{API}/revisions/")
        detail = client.get(f"{API}/revisions/{recounted.pk}/")

        assert [row["id"] for row in results(listed)] == [retitled.pk, recounted.pk]
        assert detail.json()["diff"], "the detail shows what accepting would change"
        assert accesses() == [
            (f"{API}/revisions/", [world.secret.pk], [world.informant_claim.pk], [world.informant.pk]),
            (f"{API}/revisions/{recounted.pk}/", [], [world.informant_claim.pk], [world.informant.pk]),
        ]
        # Andy, without confidential access, is not shown them and leaves no record.
        assert results(client_for(world.andy).get(f"{API}/revisions/")) == []
        assert len(accesses()) == 2

    def test_detail_and_history_are_recorded(self, world):
        client = client_for(world.rita)
        assert client.get(incident_url(world.secret)).status_code == 200
        assert client.get(incident_url(world.with_informant, "history/")).status_code == 200
        detail, history = ConfidentialAccess.objects.order_by("id")
        assert (detail.user, detail.door, detail.incident_ids) == (world.rita, AccessDoor.API, [world.secret.pk])
        assert (history.claim_ids, history.source_ids) == ([world.informant_claim.pk], [world.informant.pk])

    def test_a_history_page_records_the_confidential_state_an_update_shows_as_it_was(self, world):
        # Reworded and made public in one save, the claim's update shows the informant's words as
        # they were; on a page of its own it recorded nothing, the claim being public now.
        claim = make_claim(incident=world.plain, confidential=True, excerpt="Informant K, Hyesan")
        Claim.objects.filter(pk=claim.pk).update(confidential=False, excerpt="A witness said so")
        client = client_for(world.rita)
        pages, url = [], incident_url(world.plain, "history/?page_size=1")
        while url:
            before = ConfidentialAccess.objects.count()
            body = client.get(url).json()
            recorded = [access.claim_ids for access in ConfidentialAccess.objects.order_by("id")[before:]]
            pages.append(("Informant K" in str(body["results"]), recorded))
            url = body["next"]

        shown = [recorded for shows, recorded in pages if shows]
        assert shown and all(recorded == [[claim.pk]] for recorded in shown)

    def test_a_public_incidents_history_records_the_confidential_incident_an_entry_names(self, world):
        make_pair(world.secret, world.plain)

        history = client_for(world.rita).get(incident_url(world.plain, "history/"))

        assert f"Duplicate pair ({world.secret})" in history.content.decode()
        assert only_access().incident_ids == [world.secret.pk]

    def test_a_list_page_is_one_record_holding_every_confidential_id_on_it(self, world):
        assert len(results(client_for(world.rita).get(f"{API}/incidents/"))) == 4
        access = only_access()
        assert access.door == AccessDoor.API and access.path == f"{API}/incidents/"
        assert access.incident_ids == [world.secret.pk]
        assert sorted(access.claim_ids) == sorted([world.confidential_claim.pk, world.informant_claim.pk])
        assert access.source_ids == [world.informant.pk]

    def test_a_page_records_only_the_rows_it_shows(self, world):
        # Each page is fetched with one row more, to know whether another follows: that row is not
        # shown, so it is not recorded, in either direction of the cursor.
        client = client_for(world.rita)
        first = client.get(f"{API}/incidents/?page_size=1")
        assert [row["title"] for row in results(first)] == ["Secret"]
        assert (only_access().incident_ids, only_access().claim_ids) == ([world.secret.pk], [])
        second = client.get(first.json()["next"])
        assert [row["title"] for row in results(second)] == ["Claim"]
        back = client.get(second.json()["previous"])
        assert [row["title"] for row in results(back)] == ["Secret"]
        _, shown_second, shown_back = ConfidentialAccess.objects.order_by("id")
        assert (shown_second.incident_ids, shown_second.claim_ids, shown_second.source_ids) == (
            [],
            [world.confidential_claim.pk],
            [],
        )
        assert (shown_back.incident_ids, shown_back.claim_ids) == ([world.secret.pk], [])
        oldest_first = client.get(f"{API}/incidents/?page_size=2&ordering=date_start")
        assert [row["title"] for row in results(oldest_first)] == ["Plain", "Informant's"]
        newest = ConfidentialAccess.objects.order_by("id").last()
        assert (newest.incident_ids, newest.claim_ids, newest.source_ids) == (
            [],
            [world.informant_claim.pk],
            [world.informant.pk],
        )

    def test_a_source_made_confidential_later_is_recorded_with_its_claims_on_a_list(self, world):
        # A page's confidential claims are read from its incidents' kept export rows, which the
        # source's own change brings up to date.
        client = client_for(world.rita)
        client.get(f"{API}/incidents/?date_to=2020-12-31")
        assert not ConfidentialAccess.objects.exists()
        Source.objects.filter(pk=world.plain_claim.source_id).update(confidential=True)
        client.get(f"{API}/incidents/?date_to=2020-12-31")
        access = only_access()
        assert (access.incident_ids, access.claim_ids, access.source_ids) == (
            [],
            [world.plain_claim.pk],
            [world.plain_claim.source_id],
        )

    def test_reads_without_confidential_records_record_nothing(self, world):
        client_for(world.rita).get(f"{API}/incidents/?date_to=2020-12-31")
        client_for(world.rita).get(incident_url(world.plain))
        client_for(world.andy).get(f"{API}/incidents/")
        client_for(world.andy).get(incident_url(world.with_confidential_claim))
        client_for().get(f"{API}/incidents/")
        client_for().get(f"{API}/sources/")
        assert not ConfidentialAccess.objects.exists()

    def test_sources_are_recorded(self, world):
        client = client_for(world.rita)
        client.get(f"{API}/sources/")
        client.get(f"{API}/sources/{world.informant.pk}/")
        listed, detail = ConfidentialAccess.objects.order_by("id")
        assert listed.source_ids == detail.source_ids == [world.informant.pk]

    def test_the_list_query_count_does_not_grow_with_the_page_size(self, world):
        for _ in range(6):
            make_claim(incident=make_incident(confidential=True), confidential=True)

        client = client_for(world.rita)
        client.get(f"{API}/incidents/")  # the token's first use, and anything else done once

        def queries(page_size: int) -> int:
            with CaptureQueriesContext(connection) as captured:
                assert len(results(client.get(f"{API}/incidents/?page_size={page_size}"))) == page_size
            return len(captured)

        # The page (confidential markers included), the user's permissions, and the one insert.
        assert queries(2) == queries(9)
        two, nine = ConfidentialAccess.objects.order_by("-id")[:2][::-1]
        assert (len(two.incident_ids), len(nine.incident_ids)) == (2, 7)


class TestAnswersAndMessages:
    """What a write's answer, a refusal or a page's message shows is a read too: each named a
    confidential record to a reader with Confidential access and left no trace (a PATCH that
    changes nothing was a read of an informant's source no one could find)."""

    def test_a_write_answer_records_the_confidential_source_it_shows(self, world):
        answer = client_for(world.rita).patch(
            f"{API}/sources/{world.informant.pk}/", {"version": world.informant.version}, format="json"
        )

        assert answer.status_code == 200 and answer.json()["title"] == "Informant"
        assert accesses() == [(f"{API}/sources/{world.informant.pk}/", [], [], [world.informant.pk])]

    def test_a_new_source_refused_as_a_lookalike_records_the_confidential_one_it_names(self, client, world):
        Source.objects.filter(pk=world.informant.pk).update(url="https://example.org/testimony")
        sent = {"title": "Another", "kind": "testimony", "url": "https://example.org/testimony"}

        refused = client_for(world.rita).post(f"{API}/sources/", sent, format="json")
        client.force_login(world.rita)
        page = client.post(reverse("admin:incidents_source_add"), sent)

        assert refused.status_code == 409 and refused.json()["sources"][0]["title"] == "Informant"
        assert page.status_code == 200 and "Informant" in page.content.decode()
        assert [sources for *_, sources in accesses()] == [[world.informant.pk]] * 2
        assert [access.door for access in ConfidentialAccess.objects.order_by("id")] == ["api", "admin"]

    def test_a_response_read_through_the_api_records_its_confidential_incident_and_source(self, world):
        response = make_response(incidents=[world.secret, world.plain], source=world.informant)
        client = client_for(world.rita)

        detail = client.get(f"{API}/responses/{response.pk}/").json()
        listed = results(client.get(f"{API}/responses/"))

        assert detail["source"] == world.informant.pk and world.secret.public_id in detail["incidents"]
        assert [row["id"] for row in listed] == [response.pk]
        assert accesses() == [
            (f"{API}/responses/{response.pk}/", [world.secret.pk], [], [world.informant.pk]),
            (f"{API}/responses/", [world.secret.pk], [], [world.informant.pk]),
        ]
        # A response naming nothing confidential records nothing, nor does a reader without access.
        client.get(f"{API}/responses/{make_response(incidents=[world.plain]).pk}/")
        client_for(world.andy).get(f"{API}/responses/")
        assert len(accesses()) == 2

    def test_the_responses_list_records_in_a_fixed_number_of_queries(self, world):
        client = client_for(world.rita)
        for _ in range(6):
            make_response(incidents=[make_incident(confidential=True)], source=world.informant)
        client.get(f"{API}/responses/")

        def queries(page_size: int) -> int:
            with CaptureQueriesContext(connection) as captured:
                assert len(results(client.get(f"{API}/responses/?page_size={page_size}"))) == page_size
            return len(captured)

        assert queries(2) == queries(6)
        two, six = ConfidentialAccess.objects.order_by("-id")[:2][::-1]
        assert (len(two.incident_ids), len(six.incident_ids)) == (2, 6)

    def test_an_edit_answered_with_a_revision_records_the_confidential_claims_it_shows(self, world):
        # The 202 is the revision as its detail shows it, the informant's claim kept included: the
        # detail recorded it, this answer nothing.
        analyst = make_user(roles.ANALYST, confidential=True)
        client = client_for(analyst)
        shown = client.get(incident_url(world.with_informant)).json()

        answer = client.patch(
            incident_url(world.with_informant),
            {"people_count": 81, "claims": shown["claims"], "version": shown["version"]},
            format="json",
        )

        assert answer.status_code == 202, answer.content
        assert [claim["source"] for claim in answer.json()["changes"]["claims"]] == [world.informant.pk]
        # The read before it, then the answer.
        assert (
            accesses()
            == [(incident_url(world.with_informant), [], [world.informant_claim.pk], [world.informant.pk])] * 2
        )

    def test_a_decision_answer_records_the_confidential_source_its_revision_proposes(self, world):
        proposer = make_user(roles.ANALYST, confidential=True)
        proposed = client_for(proposer).patch(
            incident_url(world.plain),
            {
                "version": world.plain.version,
                "claims": [{"source": world.informant.pk, "source_connection": "victim", "excerpt": "We were 80"}],
            },
            format="json",
        )
        assert proposed.status_code == 202, proposed.content
        revision = proposed.json()["id"]

        answer = client_for(world.rita).post(f"{API}/revisions/{revision}/reject/", {"note": "no"}, format="json")
        listed = client_for(world.rita).get(f"{API}/revisions/?state=rejected")

        assert answer.status_code == 200 and "We were 80" in answer.content.decode()
        assert [row["id"] for row in results(listed)] == [revision]
        # The decided revision's `changes` still show the claim and its source, in the list too.
        assert [(path, sources) for path, _, _, sources in accesses()] == [
            # The answer to the proposal, which shows them to its proposer.
            (incident_url(world.plain), [world.informant.pk]),
            (f"{API}/revisions/{revision}/reject/", [world.informant.pk]),
            (f"{API}/revisions/?state=rejected", [world.informant.pk]),
        ]

    def test_an_incident_page_records_the_confidential_incident_its_messages_name(self, client, world):
        make_pair(world.plain, world.secret)
        client.force_login(world.rita)

        page = client.get(admin_url(world.plain))

        assert "Secret" in page.content.decode()
        assert accesses() == [(admin_url(world.plain), [world.secret.pk], [], [])]

    def test_the_possible_duplicates_named_after_a_save_are_recorded(self, client, world):
        # Another confidential incident of the same type and day: the save's warning names it.
        tumen = make_place(name="Tumen")
        world.secret.places.add(tumen)
        twin = make_incident(
            title="Twin",
            confidential=True,
            date_start=world.secret.date_start,
            date_end=world.secret.date_end,
            places=[tumen],
        )
        client.force_login(world.rita)

        saved = saved_unchanged(client, admin_url(world.secret))
        page = client.get(saved.url)

        assert "Possible duplicates" in page.content.decode() and "Twin" in page.content.decode()
        # The form's page records the incident, its save the twin the warning names.
        shown_there = [incident_ids for path, incident_ids, _, _ in accesses() if path == admin_url(world.secret)]
        assert shown_there == [[world.secret.pk], [twin.pk]]


class TestImports:
    """An import's preview, its error page and the command's lines name records the file does not:
    the confidential claims an update keeps, with their sources, the incidents a new row may
    repeat, the candidates of an ambiguous name. Each is a read of the confidential ones."""

    URL = reverse("admin:incidents_incident_import_csv")
    HEADER = "public_id,version,title,type,date_start,date_end,sources"

    def kept_row(self, world) -> str:
        # The informant's incident, its row listing no source: its confidential claim is kept.
        incident = world.with_informant
        slug = incident.incident_type.slug
        return f"{incident.public_id},{incident.version},{incident.title},{slug},2023-06-01,2023-06-01,"

    def upload(self, client, content: str):
        return client.post(self.URL, {"file": SimpleUploadedFile("incidents.csv", content.encode(), "text/csv")})

    def test_the_preview_records_the_confidential_claim_it_keeps_and_the_incident_it_may_repeat(self, client, world):
        tumen = make_place(name="Tumen")
        world.secret.places.add(tumen)
        client.force_login(world.rita)
        new_row = f",,Return at Tumen,{world.secret.incident_type.slug},2023-08-01,2023-08-01,"
        preview = self.upload(client, f"{self.HEADER},places\n{self.kept_row(world)},\n{new_row},Tumen\n")

        assert preview.status_code == 200
        assert "Informant" in preview.text and "Secret" in preview.text
        assert accesses() == [(self.URL, [world.secret.pk], [world.informant_claim.pk], [world.informant.pk])]

    def test_the_error_page_records_the_confidential_candidates_it_lists(self, client, world):
        make_source(title="Informant", kind="testimony")  # a public namesake
        client.force_login(world.rita)
        row = f",,New,{world.plain.incident_type.slug},2023-08-01,2023-08-01,Informant"

        refused = self.upload(client, f"{self.HEADER}\n{row}\n")

        assert refused.status_code == 400 and f"[#{world.informant.pk}]" in refused.text
        assert accesses() == [(self.URL, [], [], [world.informant.pk])]

    def test_the_commands_lines_record_the_confidential_claim_they_name(self, world, tmp_path):
        path = tmp_path / "incidents.csv"
        path.write_text(f"{self.HEADER}\n{self.kept_row(world)}\n")
        out = io.StringIO()

        call_command("import_incidents", str(path), f"--user={world.rita.username}", "--dry-run", stderr=out)

        assert "Informant" in out.getvalue()
        access = only_access()
        assert (access.door, access.claim_ids, access.source_ids) == (
            AccessDoor.COMMAND,
            [world.informant_claim.pk],
            [world.informant.pk],
        )

    def test_a_reader_without_confidential_access_leaves_no_record(self, client, world):
        client.force_login(world.andy)
        self.upload(client, f"{self.HEADER}\n{self.kept_row(world)}\n")
        assert not ConfidentialAccess.objects.exists()


class TestNotesWrittenInConfidence:
    """A note written in confidence (`NoteWrittenInConfidence`) may name what only readers with
    Confidential access could see: each door that shows it to one of them records the pair or merge."""

    NOTE = "Informant K saw both"

    @pytest.fixture
    def decided(self, world):
        """The plain incident and the one an informant reported, decided "unsure" by Rita, her note
        written beside the informant's claim."""
        pair = make_pair(world.plain, world.with_informant)
        return duplicate_pair_decide(user=world.rita, pair=pair, decision="unsure", note=self.NOTE)

    @staticmethod
    def notes_recorded() -> dict[str, tuple[list[int], list[int]]]:
        return {
            access.path: (access.duplicate_pair_ids, access.merge_ids) for access in ConfidentialAccess.objects.all()
        }

    def test_every_door_showing_the_note_records_the_pair_or_merge(self, client, world, decided):
        cara = make_user(roles.REVIEWER, confidential=True)
        client.force_login(cara)
        api = client_for(cara)

        shown = [
            client.get(admin_url(decided)).content.decode(),
            client.get(admin_url(decided, "history")).content.decode(),
            str(api.get(f"{API}/duplicates/", {"decision": "unsure"}).json()),
            str(api.get(f"{API}/duplicates/{decided.pk}/").json()),
            str(api.get(incident_url(world.plain, "history/")).json()),
        ]
        merged = api.post(f"{API}/duplicates/{decided.pk}/merge/", {"note": "K again"}, format="json").json()
        merge_page = client.get(reverse("admin:incidents_incidentmerge_change", args=[merged["id"]])).content.decode()
        survivor = Incident.objects.get(public_id=merged["survivor"])
        undone = api.post(f"{API}/incidents/{merged['merged']}/unmerge/", {}, format="json").json()

        assert all(self.NOTE in page for page in shown) and "K again" in merge_page and "K again" in str(undone)
        pair_note, merge_note = ([decided.pk], []), ([], [merged["id"]])
        recorded = self.notes_recorded()
        assert recorded[admin_url(decided)] == pair_note
        assert recorded[admin_url(decided, "history")] == pair_note
        assert recorded[f"{API}/duplicates/?decision=unsure"] == pair_note
        assert recorded[f"{API}/duplicates/{decided.pk}/"] == pair_note
        assert recorded[incident_url(world.plain, "history/")] == pair_note
        assert recorded[f"{API}/duplicates/{decided.pk}/merge/"] == merge_note
        assert recorded[reverse("admin:incidents_incidentmerge_change", args=[merged["id"]])] == merge_note
        assert recorded[f"{API}/incidents/{merged['merged']}/unmerge/"] == merge_note
        assert survivor.pk in (world.plain.pk, world.with_informant.pk)

    def test_a_note_not_written_in_confidence_records_nothing(self, client, world):
        pair = duplicate_pair_decide(
            user=world.rita, pair=make_pair(world.plain, make_incident()), decision="unsure", note="Two markets"
        )
        client.force_login(world.rita)

        client.get(admin_url(pair))
        client_for(world.rita).get(f"{API}/duplicates/{pair.pk}/")

        assert not ConfidentialAccess.objects.exists()

    def test_the_api_list_records_every_note_of_its_page_in_a_fixed_number_of_queries(self, world, decided):
        api = client_for(world.rita)
        api.get(f"{API}/duplicates/")  # the token's first use, and anything else done once

        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert api.get(f"{API}/duplicates/", {"decision": "unsure"}).status_code == 200
            return len(captured)

        with_one = queries()
        for _ in range(4):
            pair = make_pair(make_incident(), world.with_informant)
            duplicate_pair_decide(user=world.rita, pair=pair, decision="unsure", note=self.NOTE)
        assert queries() == with_one
        assert len(ConfidentialAccess.objects.order_by("id").last().duplicate_pair_ids) == 5

    def test_a_reader_without_confidential_access_leaves_no_record(self, client, world, decided):
        reviewer = make_user(roles.REVIEWER)
        client.force_login(reviewer)

        client.get(admin_url(decided))
        client_for(reviewer).get(f"{API}/duplicates/{decided.pk}/")

        assert not ConfidentialAccess.objects.exists()


class TestCsv:
    def test_an_http_export_records_its_filters_rows_and_confidential_records(self, world):
        response = client_for(world.rita).get(f"{API}/incidents.csv?date_from=2023-01-01&bom=1")
        assert response.status_code == 200
        b"".join(response.streaming_content)
        access = only_access()
        assert (access.user, access.door, access.row_count) == (world.rita, AccessDoor.CSV, 3)
        assert access.export_filters == {"date_from": ["2023-01-01"], "bom": ["1"]}
        assert access.incident_ids == [world.secret.pk]
        assert access.source_ids == [world.informant.pk]

    def test_a_nul_character_in_the_query_string_is_recorded_not_a_server_error(self, world):
        # PostgreSQL's text and JSON refuse NUL: the record of a query string carrying one (found by
        # the schema's generated requests: `?%00=null`) failed the export it recorded, a 500. A
        # parameter the export does not read is refused now (a 400 naming it), so the NUL comes in a
        # value of one it reads without minding the value: DRF's `format`, the export's whatever it says.
        refused = client_for(world.rita).get(f"{API}/incidents.csv?%00=null&date_from=2023-01-01")
        assert (refused.status_code, list(refused.json())) == (400, ["\x00"])
        response = client_for(world.rita).get(f"{API}/incidents.csv?format=a%00b&date_from=2023-01-01")
        assert response.status_code == 200, response.content
        b"".join(response.streaming_content)
        access = only_access()
        assert access.export_filters == {"format": ["a\ufffdb"], "date_from": ["2023-01-01"]}

    def test_the_admin_export_is_recorded(self, client, world):
        client.force_login(world.rita)
        response = client.get(reverse("admin:incidents_incident_export_csv") + "?confidential__exact=1")
        b"".join(response.streaming_content)
        access = only_access()
        assert (access.door, access.row_count, access.incident_ids) == (AccessDoor.CSV, 1, [world.secret.pk])
        assert access.export_filters == {"confidential__exact": ["1"]}

    def test_the_export_command_is_recorded(self, world, tmp_path):
        call_command("export_incidents", "--user", world.rita.username, "--date-to", "2023-07-31", "-o", tmp_path / "x")
        access = only_access()
        assert (access.door, access.row_count, access.export_filters) == (
            AccessDoor.COMMAND,
            3,
            {"date_to": ["2023-07-31"]},
        )
        assert access.claim_ids == sorted([world.confidential_claim.pk, world.informant_claim.pk])

    def test_exports_without_confidential_records_record_nothing(self, world, tmp_path):
        b"".join(client_for(world.rita).get(f"{API}/incidents.csv?date_to=2020-12-31").streaming_content)
        b"".join(client_for(world.andy).get(f"{API}/incidents.csv").streaming_content)
        call_command("export_incidents", "-o", tmp_path / "public.csv")
        assert not ConfidentialAccess.objects.exists()

    def test_a_download_broken_off_has_been_recorded_before_its_first_byte(self, world):
        Incident.objects.bulk_create(
            Incident(
                title="s" * 290,
                incident_type=incident_type(),
                date_start=date(2023, 1, 1),
                date_end=date(2023, 1, 1),
                confidential=True,
            )
            for _ in range(600)
        )
        stream = stream_incidents_csv(
            Incident.objects.visible_to(world.rita), world.rita, door=AccessDoor.CSV, export_filters={}
        )
        next(stream)
        # What a WSGI server does when the client goes away: the COPY's transaction rolls back. The
        # record holds every row the export selected, not the few sent: it was written first.
        stream.close()
        access = only_access()
        assert (access.row_count, len(access.incident_ids)) == (604, 601)


class TestTheRecordOfAccesses:
    def test_a_record_page_says_who_read_it_and_links_to_every_read(self, client, world):
        client.force_login(world.rita)
        client.get(admin_url(world.informant))
        page = client.get(admin_url(world.informant)).content.decode()
        assert "Read by" in page and world.rita.username in page
        assert f"{ACCESSES}?source={world.informant.pk}" in page
        listed = client.get(f"{ACCESSES}?source={world.informant.pk}")
        assert listed.status_code == 200
        assert list(listed.context["cl"].result_list) == list(ConfidentialAccess.objects.all())
        assert not client.get(f"{ACCESSES}?incident={world.secret.pk}").context["cl"].result_list

    def test_reviewers_with_confidential_access_filter_the_list(self, client, world):
        client_for(world.rita).get(f"{API}/incidents/")
        client.force_login(world.rita)
        client.get(admin_url(world.secret))
        by_door = client.get(f"{ACCESSES}?door__exact=api")
        assert [access.door for access in by_door.context["cl"].result_list] == [AccessDoor.API]
        assert len(client.get(f"{ACCESSES}?incident={world.secret.pk}").context["cl"].result_list) == 2

    def test_a_record_id_in_other_digits_or_beyond_any_id_is_refused_or_finds_nothing(self, client, world):
        client_for(world.rita).get(incident_url(world.secret))
        client.force_login(world.rita)
        # "²" is a digit to str.isdigit() but not to int(): refused like any other id that is no number.
        superscript, letter = client.get(ACCESSES, {"incident": "²"}), client.get(ACCESSES, {"incident": "x"})
        assert superscript.status_code == letter.status_code == 400
        assert "<strong>incident</strong>: Give the record&#x27;s id, a whole number." in superscript.content.decode()
        beyond = client.get(ACCESSES, {"source": str(2**63)})
        assert beyond.status_code == 200 and not beyond.context["cl"].result_list

    def test_nobody_else_sees_who_read_what(self, client, world):
        # An analyst given confidential access reads the records, not who else read them.
        reader = make_user(roles.ANALYST, confidential=True)
        client.force_login(reader)
        page = client.get(admin_url(world.secret)).content.decode()
        assert "Read by" not in page
        assert client.get(ACCESSES).status_code == 403
        reviewer_without_confidential = make_user(roles.REVIEWER)
        client.force_login(reviewer_without_confidential)
        assert client.get(ACCESSES).status_code == 403

    def test_nobody_can_add_change_or_delete_an_access_in_the_admin(self, client, world):
        client_for(world.rita).get(incident_url(world.secret))
        access = only_access()
        client.force_login(make_user(roles.REVIEWER, confidential=True, is_superuser=True))
        change = admin_url(access)
        assert client.get(change).status_code == 200
        assert client.post(change, {"door": "csv"}).status_code == 403
        assert client.post(admin_url(access, "delete"), {"post": "yes"}).status_code == 403
        assert client.get(reverse("admin:incidents_confidentialaccess_add")).status_code == 403
        bulk_delete = client.post(
            ACCESSES, {"action": "delete_selected", "_selected_action": [access.pk], "post": "yes"}
        )
        assert bulk_delete.status_code in (200, 302)
        access.refresh_from_db()
        assert access.door == AccessDoor.API

    def test_the_database_refuses_to_change_or_delete_an_access(self, world):
        client_for(world.rita).get(incident_url(world.secret))
        with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
            ConfidentialAccess.objects.update(incident_ids=[])
        with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
            ConfidentialAccess.objects.all().delete()
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM incidents_confidentialaccess")
        assert only_access().incident_ids == [world.secret.pk]


def test_a_reader_of_confidential_records_cannot_be_deleted(world):
    client_for(world.rita).get(incident_url(world.secret))
    with pytest.raises(ProtectedError), transaction.atomic():
        world.rita.delete()
    assert ConfidentialAccess.objects.filter(user=world.rita).exists()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_each_access_is_committed_at_once(world):
    # As in production, where no test transaction wraps the request: the record is written in one
    # statement of its own, committed whether or not the rest of the request succeeds.
    assert client_for(world.rita).get(incident_url(world.secret)).status_code == 200
    b"".join(client_for(world.rita).get(f"{API}/incidents.csv?date_from=2023-08-01").streaming_content)
    assert client_for(world.rita).get(f"{API}/incidents/").status_code == 200
    detail, export, listed = ConfidentialAccess.objects.order_by("id")
    assert (detail.user, detail.door, detail.incident_ids, detail.path) == (
        world.rita,
        AccessDoor.API,
        [world.secret.pk],
        incident_url(world.secret),
    )
    assert (export.door, export.row_count, export.export_filters) == (AccessDoor.CSV, 1, {"date_from": ["2023-08-01"]})
    assert detail.at <= export.at
    assert (listed.door, listed.incident_ids, listed.source_ids) == (
        AccessDoor.API,
        [world.secret.pk],
        [world.informant.pk],
    )
    assert sorted(listed.claim_ids) == sorted([world.confidential_claim.pk, world.informant_claim.pk])
