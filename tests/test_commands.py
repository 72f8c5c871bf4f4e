"""Management commands: the demo-data generator, the sample data, the admin account, the smoke request."""

import os
import random
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, ProgrammingError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents import roles
from incidents.models import (
    Claim,
    Incident,
    IncidentFacetTotal,
    IncidentPlace,
    IncidentRollup,
    IncidentRollupEntry,
    IncidentSearchDocument,
    Involvement,
    Place,
    Source,
    VictimGroup,
)
from tests.api_support import client_for, incident_url
from tests.factories import make_claim, make_incident, make_place, make_source, make_user


class Rollback(Exception):
    pass


def generate_and_snapshot(**options):
    """Generate in a savepoint, read back what was written (ids and the titles that carry them left
    out, as sequences move on), then undo it."""
    try:
        with transaction.atomic():
            call_command("generate_demo_data", **options)
            snapshot = {
                "incidents": list(
                    Incident.objects.order_by("id").values_list(
                        "incident_type__slug", "date_start", "date_end", "date_precision", "people_count",
                        "people_count_min", "people_count_max", "count_qualifier", "review_state", "confidential",
                    )
                ),
                "claims": list(Claim.objects.order_by("id").values_list("people_count", "source_connection")),
                "places": list(IncidentPlace.objects.order_by("id").values_list("place__name", flat=True)),
            }  # fmt: skip
            raise Rollback
    except Rollback:
        return snapshot


def test_demo_data_satisfies_every_model_rule():
    call_command("generate_demo_data", incidents=300, seed=7, batch_size=120, stdout=None)
    assert Incident.objects.count() == 300
    assert Source.objects.count() >= 30
    for model in (Incident, Claim, VictimGroup, Involvement, Source):
        for row in model.objects.all():
            # full_clean runs the same rules as the admin and the API (ranges, choices, lengths).
            row.full_clean()
    assert Incident.objects.filter(claims__isnull=True).count() == 0
    precisions = set(Incident.objects.values_list("date_precision", flat=True))
    assert {"day", "month", "year"} <= precisions
    assert Incident.objects.filter(review_state="published").exists()
    assert Incident.objects.exclude(review_state="published").exists()


def kept_totals() -> list[tuple]:
    """Every kept total, its key and every figure it keeps (what the count in bulk and the count of
    each edit must agree on to the last column)."""
    return list(IncidentRollup.objects.order_by(*CELL_KEY).values_list(*CELL_KEY, *CELL_FIGURES))


def facet_totals() -> list[tuple]:
    key = [field.name for field in IncidentFacetTotal._meta.fields if field.name != "id"]
    return list(IncidentFacetTotal.objects.order_by(*key).values_list(*key))


CELL_KEY = ("start_month", "end_month", "incident_type", "verification", "review_state", "confidential",
            "dimension", "country", "within_country", "organization", "place")  # fmt: skip
CELL_FIGURES = ("incidents", "incidents_without_figure", "people_count", "people_count_known", "people_count_min",
                "people_count_min_known", "people_count_max", "people_count_max_known")  # fmt: skip
# Where a kept total's incidents stand in `kept_totals`' rows.
INCIDENTS = len(CELL_KEY)


def what_is_there_measured():
    """The generator goes by the planner's figure for the incidents there, which an ANALYZE of an
    earlier test (kept despite its rollback) may have left too large."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE incidents_incident")


def test_demo_data_is_counted_into_the_statistics_totals():
    # The generator counts its incidents once at the end, with their insert triggers off meanwhile:
    # a load at least as large as what is there counts every incident anew in bulk, a smaller one
    # adds its incidents by the count each edit runs. Either way the totals must equal a recount
    # from the incidents, the sample data's included.
    call_command("loaddata", "sample", verbosity=0)
    what_is_there_measured()
    for incidents, count in [(200, "incident_rollup_count_into_empty("), (30, "incident_rollup_count(")]:
        with CaptureQueriesContext(connection) as queries:
            call_command("generate_demo_data", incidents=incidents, seed=5, batch_size=70, stdout=StringIO())
        assert any(count in query["sql"] for query in queries), count
    counted, facets = kept_totals(), facet_totals()
    assert sum(cell[INCIDENTS] for cell in counted if cell[6] == "incident") == 234
    assert facets
    call_command("recount_statistics", stdout=StringIO())
    assert kept_totals() == counted
    assert facet_totals() == facets


def every_total_and_entry() -> tuple[list, list, list]:
    columns = [field.attname for field in IncidentRollupEntry._meta.fields]
    entries = IncidentRollupEntry.objects.order_by("incident_id").values_list(*columns)
    return kept_totals(), facet_totals(), list(entries)


def test_totals_counted_in_bulk_equal_those_each_edit_counts(tmp_path):
    # A large load counts every incident into emptied totals with the bulk count (migration 0036),
    # not with `incident_rollup_count`, the count each edit runs. On data as messy as real ones
    # (the sample's incidents; one merged into another, one without a place, one at a place in no
    # country, one without perpetrator; the demo's nested places, second countries, receiving
    # states, unknown figures and second reports), both keep the same totals, to the last cell, when
    # the same incidents are counted by the edits' count a few at a time.
    call_command("loaddata", "sample", verbosity=0)
    nowhere = make_place(name="Somewhere at sea", country="")
    survivor, merged = make_incident(places=[nowhere]), make_incident(people_count=None, places=[nowhere])
    Incident.objects.filter(pk=merged.pk).update(merged_into=survivor)
    make_incident(places=[], people_count_min=3, people_count=None)
    with connection.cursor() as cursor:
        # As their commit would: the generator alters tables, which PostgreSQL refuses while these
        # rows' trigger events are queued.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    what_is_there_measured()
    with CaptureQueriesContext(connection) as queries:
        call_command(
            "generate_demo_data",
            incidents=300,
            seed=5,
            batch_size=70,
            duplicates=0.2,
            duplicates_truth=str(tmp_path / "truth.csv"),
            stdout=StringIO(),
        )
    assert any("incident_rollup_count_into_empty(" in query["sql"] for query in queries)
    in_bulk = every_total_and_entry()
    assert sum(cell[INCIDENTS] for cell in in_bulk[0] if cell[6] == "incident") == 300 + 4 + 2  # not the merged one
    # The demo's incidents of unknown figures are counted as without a figure, by both counts alike (below).
    assert sum(cell[INCIDENTS + 1] for cell in in_bulk[0] if cell[6] == "incident") > 0
    ids = list(Incident.objects.values_list("pk", flat=True))
    random.Random(1).shuffle(ids)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE incidents_incidentrollup, incidents_incidentfacettotal, incidents_incidentrollupentry")
        for first in range(0, len(ids), 25):
            cursor.execute("SELECT incident_rollup_count(%s)", [ids[first : first + 25]])
    assert every_total_and_entry() == in_bulk


def test_the_bulk_count_refuses_totals_already_kept():
    # It inserts without looking for a total to add to: into kept totals it would count twice.
    make_incident()
    call_command("recount_statistics", stdout=StringIO())
    with pytest.raises(ProgrammingError, match="empty totals only"), connection.cursor() as cursor:
        cursor.execute("SELECT incident_rollup_count_into_empty(ARRAY(SELECT id FROM incidents_incident))")


def search_words() -> list[tuple]:
    return list(IncidentSearchDocument.objects.order_by("incident").values_list("incident", "disclosed", "complete"))


def search_words_an_edit_computes() -> list[tuple]:
    """Every incident's words computed again by the function the triggers of an edit call. (An
    update that leaves an incident's title and description as they are does not recompute them.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT incident_search_refresh(ARRAY(SELECT id FROM incidents_incident))")
    return search_words()


def test_demo_data_search_words_equal_those_an_edit_computes():
    # The generator writes the words of its incidents once at the end, with their insert triggers
    # off meanwhile: computing them again changes none, and every incident, the sample data's
    # included, has its words.
    call_command("loaddata", "sample", verbosity=0)
    call_command("generate_demo_data", incidents=200, seed=5, batch_size=70, stdout=StringIO())
    written = search_words()
    assert len(written) == Incident.objects.count() == 204
    assert {"yanji", "dandong"} & set(" ".join(words for _, words, _ in written).replace("'", " ").split())
    assert search_words_an_edit_computes() == written


def test_demo_data_records_no_insert_history_but_audits_later_changes():
    # The synthetic rows' insert events are skipped (incidents/demo_data.py), but for the incidents
    # in review (see below); the reference rows made on the first run (countries, cities,
    # governments) are audited as any insert, and so is every later change to a demo row.
    call_command("generate_demo_data", incidents=30, seed=2, stdout=StringIO())
    for model in (Claim, IncidentPlace, Involvement, VictimGroup, Source):
        assert not inserts(model).exists(), model
    assert not inserts(Incident).exclude(pgh_obj__review_state="in_review").exists()
    localities = Place.objects.filter(kind="other")
    assert localities.exists()
    assert not inserts(Place).filter(pgh_obj__in=localities).exists()
    assert inserts(Place).filter(pgh_obj__kind="city").exists()
    incident = Incident.objects.first()
    incident.title = "Rewritten"
    incident.save()
    updates = Incident.pgh_event_models["update"].objects.filter(pgh_label="update", pgh_obj=incident)
    assert list(updates.values_list("title", flat=True)) == ["Rewritten"]


def test_demo_incidents_in_review_show_when_they_were_submitted_oldest_first(client):
    # Written without history, they showed no submission time, and the in-review list, which
    # opens oldest submitted first, listed them in no meaningful order.
    call_command("generate_demo_data", incidents=300, seed=5, batch_size=70, stdout=StringIO())
    in_review = Incident.objects.filter(review_state="in_review")
    assert in_review.count() > 10

    # One event each, the incident as stored, dated by its last change (demo incidents were not
    # all written at once); none for the others.
    events = inserts(Incident).values_list("pgh_obj_id", "pgh_created_at", "review_state", "title")
    assert sorted(events) == sorted(in_review.values_list("pk", "updated_at", "review_state", "title"))
    # The oldest made confidential since: not shown to a Reviewer without Confidential access.
    Incident.objects.filter(pk=in_review.order_by("updated_at").first().pk).update(confidential=True)
    client.force_login(make_user(roles.REVIEWER))
    listed = client.get(reverse("admin:incidents_incident_changelist"), {"review_state__exact": "in_review"})
    shown = [(incident.pk, incident.submitted_at) for incident in listed.context["cl"].result_list]
    # Those a Reviewer without Confidential access may see, oldest submitted first.
    oldest_first = in_review.filter(confidential=False).order_by("updated_at", "id")
    assert shown == list(oldest_first.values_list("pk", "updated_at")[:100])


def inserts(model):
    return model.pgh_event_models["insert"].objects.filter(pgh_label="insert")


def indexes_and_constraints() -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid::regclass::text LIKE 'incidents_%%'"
            " UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid::regclass::text LIKE 'incidents_%%'"
        )
        return set(cursor.fetchall())


def constraints_not_validated() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid::regclass::text LIKE 'incidents_%%' AND NOT convalidated"
        )
        return {name for (name,) in cursor.fetchall()}


def test_demo_data_leaves_every_index_and_constraint_in_place():
    # A load larger than the table rebuilds secondary indexes and foreign keys once, at its end.
    before, not_validated_before = indexes_and_constraints(), constraints_not_validated()
    call_command("generate_demo_data", incidents=50, seed=2)
    assert indexes_and_constraints() == before
    # Added back with a check of every row, not NOT VALID: the only constraints left unchecked are
    # the migrations' own (0086's bounds on searched texts, which rows stored before them may pass).
    assert (
        constraints_not_validated() == not_validated_before == {"claim_excerpt_bounded", "incident_description_bounded"}
    )
    with connection.cursor() as cursor:
        # Django's foreign keys are checked at commit, which a test never reaches: check at once.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(IntegrityError, match="incidents_claim_incident_id"), transaction.atomic():
        Claim.objects.create(incident_id=10**9, source=Source.objects.first())


def test_demo_data_is_deterministic_for_a_seed():
    first = generate_and_snapshot(incidents=50, seed=3)
    assert first == generate_and_snapshot(incidents=50, seed=3)
    assert first != generate_and_snapshot(incidents=50, seed=4)


def test_demo_data_public_ids_follow_existing_incidents():
    call_command("loaddata", "sample", verbosity=0)
    call_command("generate_demo_data", incidents=10)
    public_ids = list(Incident.objects.order_by("id").values_list("public_id", flat=True))
    assert public_ids[:4] == ["INC-000001", "INC-000002", "INC-000003", "INC-000004"]
    assert len(set(public_ids)) == 14


@pytest.mark.parametrize("bad", ["0", "-5", "many"])
def test_demo_data_refuses_a_bad_count(bad):
    with pytest.raises(CommandError, match="--incidents"):
        call_command("generate_demo_data", "--incidents", bad)
    assert Incident.objects.count() == 0


def test_demo_data_refuses_duplicates_of_nothing():
    # One incident, 0.6 of them duplicates: the one would be a second report of no original.
    with pytest.raises(CommandError, match="leaves no incident to report again"):
        call_command("generate_demo_data", "--incidents", "1", "--duplicates", "0.6")
    assert Incident.objects.count() == 0


def test_ensure_admin_creates_a_random_password_once(capsys):
    call_command("ensure_admin")
    created = capsys.readouterr().out
    password = created.split("with password: ")[1].split()[0]
    assert len(password) >= 16
    assert User.objects.get(username="admin").check_password(password)
    call_command("ensure_admin")
    again = capsys.readouterr().out
    assert password not in again
    assert "changepassword" in again
    assert User.objects.filter(username="admin").count() == 1


@pytest.mark.parametrize("username", ["admin", "chief"])
def test_ensure_admin_names_the_account_to_change_the_password_of(capsys, username):
    # Typed as shown without the name, changepassword looks for the OS user's account
    # ("CommandError: user 'root' does not exist").
    call_command("ensure_admin", "--username", username)
    assert f"`python manage.py changepassword {username}`" in capsys.readouterr().out


@pytest.mark.parametrize("username", ["", "a" * 151, "bad name!"])
def test_ensure_admin_refuses_a_username_the_admin_refuses(username):
    with pytest.raises(CommandError, match="--username: "):
        call_command("ensure_admin", "--username", username)
    assert not User.objects.exists()


def test_ensure_admin_refuses_an_address_to_log_in_at_that_is_none():
    with pytest.raises(CommandError, match="--url: give an http:// or https:// address"):
        call_command("ensure_admin", "--url", "")
    assert not User.objects.exists()


def test_ensure_admin_says_how_to_set_up_the_second_factor_where_it_is_required(capsys, settings):
    settings.REQUIRE_2FA = True
    call_command("ensure_admin", "--url", "https://tracker.example.org/admin/")
    command = capsys.readouterr().out.split("`")[-2]
    assert command == "python manage.py setup_link admin --url https://tracker.example.org"
    call_command(*command.split()[2:], stdout=StringIO())
    assert User.objects.get(username="admin").setup_links.count() == 1


def test_smoke_request_fails_on_a_missing_page():
    call_command("smoke_request", "/admin/login/")
    with pytest.raises(CommandError, match="404"):
        call_command("smoke_request", "/no-such-page/")


def test_smoke_request_passes_on_a_production_server(settings, capsys):
    # The test client asks as `testserver`, a host a server's DJANGO_ALLOWED_HOSTS does not name:
    # on the README's deployment every smoke request answered 400. It asks by the site's own name,
    # over HTTPS as the TLS proxy would.
    settings.ALLOWED_HOSTS = ["tracker.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    call_command("smoke_request", "/admin/login/")
    assert "GET /admin/login/ answered 200." in capsys.readouterr().out


@pytest.mark.parametrize("address", ["http://evil.example/", "//evil.example/", "", "admin/login/"])
def test_smoke_request_refuses_what_is_no_path_of_this_site(address):
    # The test client asks for an address's path alone: these reported "answered 200" for `/`.
    with pytest.raises(CommandError, match="give a path of this site starting with one /"):
        call_command("smoke_request", address)


def test_ensure_admin_refuses_an_existing_account_that_is_no_administrator(capsys):
    make_user(roles.REVIEWER, username="rev")
    with pytest.raises(CommandError, match="--username: 'rev' exists but is not an active administrator"):
        call_command("ensure_admin", "--username", "rev")
    User.objects.filter(username="rev").update(is_superuser=True, is_active=False)
    with pytest.raises(CommandError, match="not an active administrator"):
        call_command("ensure_admin", "--username", "rev")
    User.objects.filter(username="rev").update(is_active=True)
    call_command("ensure_admin", "--username", "rev")
    assert "Log in at http://127.0.0.1:8000/admin/ as 'rev'" in capsys.readouterr().out


def test_ensure_admin_refuses_a_superuser_without_staff_status_whom_the_admin_would_not_let_in(capsys):
    # It said "Log in at …" to an account the admin's login refuses (only staff sign in there).
    make_user(None, username="root", is_superuser=True)
    with pytest.raises(CommandError, match=r"'root' exists but is not an active administrator.*staff status"):
        call_command("ensure_admin", "--username", "root")
    assert "Log in at" not in capsys.readouterr().out


def test_generate_demo_data_refuses_a_truth_file_without_duplicates(tmp_path):
    truth = tmp_path / "truth.csv"
    with pytest.raises(CommandError, match="--duplicates-truth: it holds the true pairs of --duplicates"):
        call_command("generate_demo_data", "--incidents", "1", "--duplicates-truth", str(truth))
    assert Incident.objects.count() == 0 and not truth.exists()


def test_export_filters_follow_the_exporting_users_sight(tmp_path):
    # The command reads through the selectors with the user it names, not a stand-in request.
    informant = make_source(title="Informant", confidential=True)
    incident = make_incident(title="Reported in confidence")
    make_claim(incident=incident, source=informant, confidential=True)
    insider = make_user(roles.REVIEWER, confidential=True)
    output = tmp_path / "insider.csv"

    call_command("export_incidents", f"--user={insider.username}", f"--source={informant.pk}", "-o", str(output))

    assert "Reported in confidence" in output.read_text()
    with pytest.raises(CommandError, match="--source"):
        call_command("export_incidents", f"--source={informant.pk}", "-o", str(tmp_path / "public.csv"))


def test_export_help_names_the_values_of_its_repeatable_filters(capsys):
    with pytest.raises(SystemExit):
        call_command("export_incidents", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--verification VERIFICATION verification (repeatable): alleged, corroborated, verified," in help_text
    assert "--review-state REVIEW_STATE review_state (repeatable): draft, in_review, published" in help_text


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        # The filter set's rules, said of the command's options: a fraction of a count was truncated.
        (("--min-people", "1.5"), "--min-people"),
        # A time without its offset was read as UTC: a script's local time, hours off.
        (("--updated-since", "2024-05-01T00:00:00"), "--updated-since"),
        # A search of no word exported every incident.
        (("--q", "!!!"), "--q"),
    ],
)
def test_export_refuses_a_filter_value_the_api_refuses(tmp_path, arguments, option):
    make_incident(title="Not exported")
    output = tmp_path / "export.csv"
    with pytest.raises(CommandError, match=option):
        call_command("export_incidents", *arguments, "-o", str(output))
    assert not output.exists()


def test_export_refuses_an_empty_output_name(capsysbinary):
    # Read as no -o at all, it sent the rows to standard output: `-o "$OUT"` with OUT unset.
    make_incident(title="Only for the file")
    with pytest.raises(CommandError, match="-o/--output: give a path"):
        call_command("export_incidents", "-o", "")
    assert capsysbinary.readouterr().out == b""


def test_import_refuses_an_empty_file_name():
    # "Cannot read : No such file or directory." named nothing: `import_incidents "$FILE"`, FILE unset.
    make_user(roles.ANALYST, username="analyst")
    with pytest.raises(CommandError, match="FILE: give a path, not an empty one"):
        call_command("import_incidents", "", "--user=analyst")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a file every write to fails")
def test_export_tells_a_write_that_fails():
    make_incident(title="Written nowhere")
    with pytest.raises(CommandError, match=r"-o/--output: cannot write /dev/full: No space left on device"):
        call_command("export_incidents", "-o", "/dev/full")


def test_make_runs_sample_load_keeps_what_was_edited_since_the_first_start():
    # `make run` loaded the sample with `loaddata` at every start: an incident edited since came back
    # as the fixture has it, its version turned back to 1.
    first = StringIO()
    call_command("load_sample", stdout=first)
    assert "Installed 55 object(s)" in first.getvalue()
    incident = Incident.objects.get(public_id="INC-000002")
    answer = client_for(make_user(roles.REVIEWER)).patch(
        incident_url(incident), {"title": "Deportation of 80 North Koreans (checked)"}, HTTP_IF_MATCH='"1"'
    )
    assert answer.status_code == 200, answer.content

    again = StringIO()
    call_command("load_sample", stdout=again)

    incident.refresh_from_db()
    assert (incident.title, incident.version) == ("Deportation of 80 North Koreans (checked)", 2)
    assert Incident.objects.count() == 4
    assert "the sample data was not loaded again" in again.getvalue()


def test_the_sample_is_not_loaded_over_other_records_with_its_ids():
    # Demo data's first incidents and places hold the ids the sample's records have.
    place = make_place(name="Hyesan", country="KP")
    incident = make_incident(title="A demo incident", places=[place])

    call_command("load_sample", stdout=StringIO())

    assert list(Incident.objects.values_list("title", flat=True)) == ["A demo incident"]
    assert list(incident.places.values_list("name", flat=True)) == ["Hyesan"]
