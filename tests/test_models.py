"""The domain model on real PostgreSQL: constraints, overlap, visibility, labels, sample data."""

import csv
import importlib
import io
import re
from datetime import date

import pghistory
import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Model, ProtectedError
from django.test import Client

from incidents import roles
from incidents.models import SEARCHED_TEXT_MAX_LENGTH, Claim, Incident, Organization, Place, Response
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user


def assert_rejected_by_database(**fields):
    incident = make_incident()
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.filter(pk=incident.pk).update(**fields)


def test_database_refuses_end_date_before_start_date():
    assert_rejected_by_database(date_start=date(2023, 9, 1), date_end=date(2023, 8, 1))


def test_database_refuses_negative_counts():
    assert_rejected_by_database(people_count_min=-1)


def test_database_refuses_min_above_best_and_best_above_max():
    assert_rejected_by_database(people_count=50, people_count_min=60)
    assert_rejected_by_database(people_count=50, people_count_max=40)
    assert_rejected_by_database(people_count=None, people_count_min=60, people_count_max=40)


def test_database_refuses_out_of_range_coordinates():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_place(latitude=91, longitude=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_place(latitude=0, longitude=181)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_place(latitude=10, longitude=None)


def test_database_refuses_second_claim_from_same_source_on_an_incident():
    incident, source = make_incident(), make_source()
    make_claim(incident=incident, source=source)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_claim(incident=incident, source=source)


def test_model_validation_names_the_field_and_the_problem():
    incident = make_incident()
    incident.people_count, incident.people_count_min = 10, 20
    incident.date_end = date(2023, 1, 1)
    with pytest.raises(ValidationError) as error:
        incident.full_clean()
    assert "is before the start date" in error.value.message_dict["date_end"][0]
    assert "below the minimum" in error.value.message_dict["people_count"][0]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"people_count": 5, "people_count_min": 10},
        {"people_count": -1, "people_count_min": 3, "people_count_max": 2},
        {"date_end": date(2023, 1, 1)},
    ],
)
def test_constraints_checked_together_answer_as_django_checks_each(changes, django_assert_num_queries):
    incident = make_incident()
    for field, value in changes.items():
        setattr(incident, field, value)
    errors = {}
    try:
        Model.validate_constraints(incident)  # Django's own: a query per constraint
    except ValidationError as error:
        errors = error.message_dict
    if errors:
        with pytest.raises(ValidationError) as error:
            incident.validate_constraints()
        assert error.value.message_dict == errors
    else:
        # The five check constraints in one query, in a savepoint (a test runs in a transaction),
        # then public_id's uniqueness: Django's own sends 5 x 3 + 1.
        with django_assert_num_queries(4):
            incident.validate_constraints()
    incident.merged_into = incident
    with pytest.raises(ValidationError, match="merged into itself"):
        incident.validate_constraints()


def test_evidence_in_use_cannot_be_deleted():
    place, organization = make_place(), make_organization()
    source = make_source(publisher=organization)
    incident = make_incident(places=[place])
    make_claim(incident=incident, source=source)
    for evidence in (place, organization, source):
        with pytest.raises(ProtectedError), transaction.atomic():
            evidence.delete()
    assert Place.objects.filter(pk=place.pk).exists()
    assert Organization.objects.filter(pk=organization.pk).exists()


def test_public_id_is_stable_and_never_reused():
    first = make_incident()
    assert first.public_id == f"INC-{first.pk:06d}"
    first.delete()
    second = make_incident()
    assert second.public_id != first.public_id
    second.title = "Renamed"
    second.save()
    second.refresh_from_db()
    assert second.public_id == f"INC-{second.pk:06d}"


def test_every_save_increments_the_version():
    incident = make_incident()
    assert incident.version == 1
    incident.title = "Edited"
    incident.save()
    incident.save()
    incident.refresh_from_db()
    assert incident.version == 3


@pytest.mark.parametrize(
    ("start", "end", "precision", "label"),
    [
        (date(2023, 8, 29), date(2023, 8, 29), "day", "29 August 2023"),
        (date(2021, 7, 1), date(2021, 7, 31), "month", "July 2021"),
        (date(2023, 1, 1), date(2023, 12, 31), "year", "2023"),
        (date(2023, 10, 2), date(2023, 10, 9), "range", "2 October 2023 – 9 October 2023"),
        (date(2023, 8, 29), date(2023, 9, 18), "range", "29 August 2023 – 18 September 2023"),
        (date(2023, 10, 2), date(2023, 10, 8), "week", "Week of 2 October 2023 – 8 October 2023"),
        (date(2020, 1, 1), date(2023, 12, 31), "unknown", "Date unknown (2020 – 2023)"),
    ],
)
def test_date_label_follows_the_precision(start, end, precision, label):
    incident = make_incident(date_start=start, date_end=end, date_precision=precision)
    assert incident.date_label == label
    assert Incident.objects.get(pk=incident.pk).date_label == label


# The migration that words every label as the pages do, and the one before it.
WHOLE_RANGE_LABELS = importlib.import_module("incidents.migrations.0072_date_label_says_the_whole_range").Migration
BEFORE_WHOLE_RANGE_LABELS = WHOLE_RANGE_LABELS.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_words_the_stored_labels_anew_without_recording_a_change():
    several_days = make_incident(date_start=date(2023, 10, 3), date_end=date(2023, 10, 9), date_precision="day")
    migrate_incidents_back_to(BEFORE_WHOLE_RANGE_LABELS)
    try:
        before = Incident.objects.values("date_label", "version", "updated_at").get(pk=several_days.pk)
        events = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=several_days)
        labels_before = list(events.values_list("date_label", flat=True))
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert before["date_label"] == "Around 3 October 2023" and labels_before == [before["date_label"]]
    whole_range = "3 October 2023 – 9 October 2023"
    assert Incident.objects.values("date_label", "version", "updated_at").get(pk=several_days.pk) == {
        **before,
        "date_label": whole_range,
    }
    # The CSV reads the kept export row; the history keeps its one event, worded anew, so that the
    # incident's next event does not show a label changed whose dates were not.
    (row,) = csv.DictReader(io.StringIO(b"".join(Client().get("/incidents.csv").streaming_content).decode()))
    assert row["date_label"] == whole_range
    assert list(events.values_list("date_label", flat=True)) == [whole_range]


def test_month_incident_is_found_by_a_query_inside_that_month():
    july = make_incident(date_start=date(2021, 7, 1), date_end=date(2021, 7, 31), date_precision="month")
    august = make_incident(date_start=date(2021, 8, 2), date_end=date(2021, 8, 2))
    found = Incident.objects.overlapping(date(2021, 7, 15), date(2021, 7, 20))
    assert list(found) == [july]
    assert set(Incident.objects.overlapping(date(2021, 7, 31), None)) == {july, august}
    assert set(Incident.objects.overlapping(None, date(2021, 7, 1))) == {july}


class TestVisibility:
    @pytest.fixture(autouse=True)
    def incidents(self):
        self.published = make_incident(title="published")
        self.draft = make_incident(title="draft", review_state="draft")
        self.confidential = make_incident(title="confidential", confidential=True)

    def visible_titles(self, user):
        return set(Incident.objects.visible_to(user).values_list("title", flat=True))

    def test_anonymous_readers_see_only_published_non_confidential_incidents(self):
        from django.contrib.auth.models import AnonymousUser

        assert self.visible_titles(AnonymousUser()) == {"published"}
        assert self.visible_titles(None) == {"published"}

    def test_registered_non_staff_users_see_what_the_public_sees(self):
        assert self.visible_titles(make_user()) == {"published"}

    @pytest.mark.parametrize("role", [roles.VIEWER, roles.ANALYST, roles.REVIEWER])
    def test_staff_see_drafts_but_not_confidential_records(self, role):
        assert self.visible_titles(make_user(role)) == {"published", "draft"}

    def test_confidential_permission_reveals_confidential_records(self):
        assert self.visible_titles(make_user(roles.VIEWER, confidential=True)) == {"published", "draft", "confidential"}

    def test_confidential_claims_and_claims_of_confidential_sources_are_hidden(self):
        public_claim = make_claim(incident=self.published, people_count=80)
        make_claim(incident=self.published, people_count=500, confidential=True)
        make_claim(incident=self.published, source=make_source(confidential=True), people_count=300)
        viewer = make_user(roles.VIEWER)
        assert list(Claim.objects.visible_to(viewer)) == [public_claim]
        assert Claim.objects.visible_to(make_user(roles.VIEWER, confidential=True)).count() == 3

    def test_claim_range_counts_only_claims_the_user_may_see(self):
        make_claim(incident=self.published, people_count=80)
        make_claim(incident=self.published, people_count=100, people_count_min=90, people_count_max=120)
        make_claim(incident=self.published, people_count=500, confidential=True)
        public = Incident.objects.with_claim_range(None).get(pk=self.published.pk)
        assert (public.claim_people_min, public.claim_people_max) == (80, 120)
        insider = make_user(roles.VIEWER, confidential=True)
        full = Incident.objects.with_claim_range(insider).get(pk=self.published.pk)
        assert (full.claim_people_min, full.claim_people_max) == (80, 500)


def test_sensitive_place_shows_the_nearest_public_ancestors_coordinates_to_the_public():
    province = make_place(name="Jilin", kind="province", latitude=43.6, longitude=126.2)
    city = make_place(name="Tumen", kind="city", parent=province, latitude=42.97, longitude=129.84)
    facility = make_place(name="Detention centre", kind="facility", parent=city, latitude=42.9, longitude=129.5)
    unlocated = make_place(name="Somewhere near the border", parent=facility)
    gate = make_place(name="Gate", kind="facility", parent=facility, latitude=42.91, longitude=129.51)

    def shown(user, place):
        row = Place.objects.with_coordinates_for(user).get(pk=place.pk)
        return None if row.shown_latitude is None else (float(row.shown_latitude), float(row.shown_longitude))

    public, staff = None, make_user(roles.VIEWER)
    assert shown(public, facility) == (42.9, 129.5)
    assert shown(public, unlocated) == (42.9, 129.5)
    Place.objects.filter(pk__in=[facility.pk, city.pk]).update(sensitive=True)
    # Two sensitive levels up: the province is the nearest place the public may see.
    assert shown(public, facility) == (43.6, 126.2)
    assert shown(public, unlocated) == (43.6, 126.2)
    # Not sensitive itself, but inside a sensitive place: its own coordinates would tell where that is.
    assert shown(public, gate) == (43.6, 126.2)
    assert shown(staff, facility) == (42.9, 129.5)
    assert shown(staff, unlocated) is None
    Place.objects.filter(pk=province.pk).update(sensitive=True)
    assert shown(public, facility) is None


def test_sample_data_loads_and_reloads_without_duplicates():
    call_command("loaddata", "sample", verbosity=0)
    counts = {model: model.objects.count() for model in (Incident, Claim, Organization, Place)}
    call_command("loaddata", "sample", verbosity=0)
    assert {model: model.objects.count() for model in counts} == counts
    assert counts[Incident] == 4
    labels = set(Incident.objects.values_list("date_label", flat=True))
    assert labels == {"2 October 2023 – 9 October 2023", "29 August 2023", "18 September 2023", "July 2021"}
    # The informant's testimony is confidential, so its claim is hidden from the public.
    assert Claim.objects.visible_to(None).count() == Claim.objects.count() - 1


def test_linking_a_response_to_incidents_is_recorded_with_the_acting_user():

    analyst = make_user(roles.ANALYST)
    response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2023, 10, 13))
    incident = make_incident()
    with pghistory.context(user=analyst.pk):
        response.incidents.add(incident)
        response.incidents.remove(incident)
    events = apps.get_model("incidents", "ResponseIncidentEvent").objects.order_by("pgh_id")
    assert [(event.pgh_label, event.response_id, event.incident_id) for event in events] == [
        ("insert", response.pk, incident.pk),
        ("delete", response.pk, incident.pk),
    ]
    assert {event.pgh_context.metadata["user"] for event in events} == {analyst.pk}


BEFORE_ONE_LINE_NAMES = "0088_export_marks_confidential_sources"


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_stored_titles_and_names_one_line_and_stops_at_names_alike_but_for_case():
    # Stored by the API or the import before titles and names were one line.
    incident = make_incident(title="About 500 returned")
    place = make_place(name="Onsong", alternate_names=["온성", "Onsŏng"])
    make_organization(name="Daily NK")
    daily_nk_again = make_organization(name="Daily NK, again")
    migrate_incidents_back_to(BEFORE_ONE_LINE_NAMES)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_incident SET title = %s WHERE id = %s", ["About 500\r\nreturned", incident.pk]
            )
            cursor.execute(
                "UPDATE incidents_place SET name = %s, alternate_names = %s WHERE id = %s",
                ["Onsong\t", ["온\n성", "Onsŏng"], place.pk],
            )
            cursor.execute(
                "INSERT INTO incidents_place (created_at, updated_at, name, alternate_names, kind, country,"
                " sensitive, version, within_sensitive) VALUES (now(), now(), 'ONSONG ', '{}', 'city', 'CN', false, 1,"
                " false)"
            )
            # Once one line, the name of the other exactly: refused by the unique constraint
            # organizations' names already had, which stopped the migration with PostgreSQL's own
            # UniqueViolation, naming neither.
            cursor.execute(
                "UPDATE incidents_organization SET name = %s WHERE id = %s", ["Daily\nNK", daily_nk_again.pk]
            )
        # Its version alone: the model's columns added since are not there yet.
        version_before = Incident.objects.values_list("version", flat=True).get(pk=incident.pk)
        # "Onsong\t" is "Onsong " once one line, the name of another place but for case.
        refusal = "differ only in case or in line breaks: Onsong\\t / ONSONG ; Daily NK / Daily\\nNK. Rename one"
        with pytest.raises(RuntimeError, match=re.escape(refusal)):
            call_command("migrate", "incidents", verbosity=0)
        assert Organization.objects.filter(name="Daily\nNK").exists()
        # Said in SQL: the model's columns added since (a place's public version) are not there yet.
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM incidents_place WHERE name = 'ONSONG '")
            cursor.execute(
                "UPDATE incidents_organization SET name = 'Daily NK, again' WHERE id = %s", [daily_nk_again.pk]
            )
    finally:
        call_command("migrate", "incidents", verbosity=0)

    incident.refresh_from_db()
    place.refresh_from_db()
    assert (incident.title, incident.version) == ("About 500 returned", version_before + 1)
    assert (place.name, place.alternate_names) == ("Onsong ", ["온 성", "Onsŏng"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Place.objects.filter(pk=place.pk).update(name="Onsong\n")


def test_the_database_holds_the_bound_on_the_texts_the_search_reads():
    # Every door refuses a longer description or excerpt naming the field; a writer past them
    # (a script, a bulk load) is refused by PostgreSQL, before the search's words overflow.
    too_long = "x" * (SEARCHED_TEXT_MAX_LENGTH + 1)
    with pytest.raises(IntegrityError, match="incident_description_bounded"), transaction.atomic():
        make_incident(description=too_long)
    incident = make_incident(description="x" * SEARCHED_TEXT_MAX_LENGTH)
    with pytest.raises(IntegrityError, match="claim_excerpt_bounded"), transaction.atomic():
        make_claim(incident=incident, excerpt=too_long)
