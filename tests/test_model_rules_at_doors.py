"""The models' rules as each door reports them: every database constraint has a message of its
own, and the admin's forms and the API name the field at fault; a place takes its country from
its parent; the incident form offers to add a place."""

import importlib
import threading
from datetime import date

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from incidents import roles, services
from incidents.models import Claim, Incident, IncidentType, Organization, Place, Source, VictimGroup
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    place_chain,
    type_chain,
)
from tests.test_admin import incident_post
from tests.test_csv import download, read_csv
from tests.test_import import export, import_errors, run_import


def check_constraints():
    for model in (Place, IncidentType, Source, Incident, Claim, VictimGroup):
        for constraint in model._meta.constraints:
            if constraint.__class__.__name__ == "CheckConstraint":
                yield model, constraint


@pytest.mark.parametrize(
    ("model", "constraint"),
    list(check_constraints()),
    ids=[constraint.name for _, constraint in check_constraints()],
)
def test_every_check_constraint_says_what_it_protects(model, constraint):
    assert constraint.violation_error_message != constraint.default_violation_error_message
    assert constraint.violation_error_code


@pytest.fixture
def reviewer(client):
    user = make_user(roles.REVIEWER)
    client.force_login(user)
    return user


PLACE_FORM = {
    "name": "Sinuiju",
    "alternate_names": "",
    "kind": "city",
    "parent": "",
    "country": "KP",
    "latitude": "40.1",
    "longitude": "124.4",
}

# (what is sent, the field that must carry the error, its message)
PLACE_CASES = [
    ({"latitude": "95"}, "latitude", "Latitude must be between -90 and 90."),
    ({"longitude": "200"}, "longitude", "Longitude must be between -180 and 180."),
    ({"longitude": ""}, "longitude", "Give both latitude and longitude, or neither."),
    ({"latitude": ""}, "latitude", "Give both latitude and longitude, or neither."),
]


class TestPlaceRulesNameTheField:
    @pytest.mark.parametrize(("change", "field", "message"), PLACE_CASES)
    def test_in_the_admin(self, client, reviewer, change, field, message):
        answer = client.post(reverse("admin:incidents_place_add"), {**PLACE_FORM, **change})

        assert answer.status_code == 200  # the form again, with its errors
        assert answer.context["adminform"].form.errors[field] == [message]
        assert "violated" not in answer.content.decode()
        assert not Place.objects.filter(name="Sinuiju").exists()

    @pytest.mark.parametrize(("change", "field", "message"), PLACE_CASES)
    def test_in_the_api(self, reviewer, change, field, message):
        body = {name: (None if value == "" else value) for name, value in {**PLACE_FORM, **change}.items()}
        body.update(alternate_names=[], parent=None)

        answer = client_for(reviewer).post(f"{API}/places/", body, format="json")

        assert answer.status_code == 400
        assert answer.json()[field] == [message]

    def test_a_place_cannot_be_its_own_parent(self, client, reviewer):
        place = make_place(name="Dandong")
        form = {**PLACE_FORM, "name": "Dandong", "parent": str(place.pk)}

        admin_answer = client.post(reverse("admin:incidents_place_change", args=[place.pk]), form)
        api_answer = client_for(reviewer).patch(f"{API}/places/{place.pk}/", {"parent": place.pk}, format="json")

        assert admin_answer.context["adminform"].form.errors["parent"] == ["A place cannot be inside itself."]
        assert api_answer.json()["parent"] == ["A place cannot be inside itself."]


def test_a_type_cannot_be_its_own_parent(client, reviewer):
    repatriation = incident_type()
    form = {"slug": repatriation.slug, "name": repatriation.name, "parent": str(repatriation.pk), "description": ""}

    admin_answer = client.post(reverse("admin:incidents_incidenttype_change", args=[repatriation.pk]), form)
    api_answer = client_for(reviewer).patch(
        f"{API}/incident-types/{repatriation.pk}/", {"parent": repatriation.slug}, format="json"
    )

    message = ["A type cannot be its own parent, directly or through others."]
    assert admin_answer.context["adminform"].form.errors["parent"] == message
    assert api_answer.json()["parent"] == message


def test_a_type_slug_a_spreadsheet_reads_as_a_formula_is_refused_naming_it(client, reviewer):
    """A type's slug is its incidents' `type` cell in the CSV, which is not defused as the free-text
    cells are: `-A1-B2` reached an analyst's spreadsheet as a formula."""
    form = {"slug": "-A1-B2", "name": "Other", "description": ""}

    admin_answer = client.post(reverse("admin:incidents_incidenttype_add"), form)
    api_answer = client_for(reviewer).post(f"{API}/incident-types/", form, format="json")

    message = ["Start the slug with a letter or a digit: a spreadsheet reads “-” first as a formula."]
    assert admin_answer.context["adminform"].form.errors["slug"] == message
    assert api_answer.status_code == 400 and api_answer.json()["slug"] == message
    with pytest.raises(IntegrityError, match="incident_type_slug_starts_plain"), transaction.atomic():
        IncidentType.objects.create(slug="_A1", name="Other")
    assert not IncidentType.objects.filter(name="Other").exists()


def place_too_deep(what: str, level: int) -> list[str]:
    return [
        "Places nest at most 10 levels deep (country > province > city > district > village is five): "
        f"here {what} would be at level {level}. Choose a place higher up."
    ]


def type_too_deep(what: str, level: int) -> list[str]:
    return [
        f"Incident types nest at most 10 levels deep: here {what} would be at level {level}. Choose a type higher up."
    ]


class TestTreesNestAtMostTenLevels:
    """Places and incident types nest at most TREE_LEVELS_MAX (10) levels deep, at every door. An
    analyst hung places and types one below the other without limit: 1,100 types broke the public
    pages (a recursion a level), 1,500 places below a town kept it from being marked sensitive."""

    def test_a_new_place_below_the_tenth_level_is_refused_naming_its_parent(self, client, reviewer):
        chain = place_chain(10, name="China", country="CN")
        form = {**PLACE_FORM, "name": "Gate 3", "kind": "crossing", "country": "", "latitude": "", "longitude": ""}

        admin_answer = client.post(reverse("admin:incidents_place_add"), {**form, "parent": str(chain[-1].pk)})
        api_answer = client_for(reviewer).post(
            f"{API}/places/", {"name": "Gate 3", "kind": "crossing", "parent": chain[-1].pk}, format="json"
        )
        at_the_tenth = client_for(reviewer).post(
            f"{API}/places/", {"name": "Gate 3", "kind": "crossing", "parent": chain[-2].pk}, format="json"
        )

        assert admin_answer.context["adminform"].form.errors["parent"] == place_too_deep("it", 11)
        assert api_answer.status_code == 400
        assert api_answer.json()["parent"] == place_too_deep("it", 11)
        assert at_the_tenth.status_code == 201
        assert list(Place.objects.filter(name="Gate 3").values_list("parent", flat=True)) == [chain[-2].pk]

    def test_a_place_moved_with_the_places_inside_it_is_refused_naming_the_deepest(self, reviewer):
        china = place_chain(6, name="China", country="CN")
        korea = place_chain(6, name="North Korea", country="KP")

        def move(place: Place, parent: Place):
            place.refresh_from_db()
            body = {"parent": parent.pk, "version": place.version}
            return client_for(reviewer).patch(f"{API}/places/{place.pk}/", body, format="json")

        refused = move(korea[1], china[-1])  # it at level 7, the four levels inside it down to 11
        accepted = move(korea[2], china[-1])  # down to 10

        assert refused.status_code == 400
        assert refused.json()["parent"] == place_too_deep("the deepest place inside it", 11)
        assert accepted.status_code == 200
        assert Place.objects.get(pk=korea[-1].pk).parent.parent.parent.parent == china[-1]

    @pytest.mark.django_db(transaction=True)
    def test_two_moves_at_once_cannot_nest_places_past_the_tenth_level(self):
        # Each move alone nests seven levels; together, twelve. Checked at once, each against the
        # tree as the other had not yet changed it, both were saved: the second now waits for the
        # first to commit and is checked against it.
        china = place_chain(5, name="China", country="CN")
        crossing = [make_place(name="Crossing", country="CN")]
        crossing.append(Place.objects.create(name="Gate", kind="other", parent=crossing[0]))
        camp = [make_place(name="Camp", country="CN")]
        for level in range(2, 6):
            camp.append(Place.objects.create(name=f"Block {level}", kind="other", parent=camp[-1]))
        reviewer = make_user(roles.REVIEWER)
        first_checked, first_may_commit = threading.Event(), threading.Event()
        second_answered = threading.Event()
        answers = {}

        def move(name: str, place: Place, parent: Place, *, before_commit=None):
            try:
                with transaction.atomic():
                    stored = Place.objects.get(pk=place.pk)
                    services.record_save(
                        user=reviewer, record=stored, data={"parent": parent}, expected_version=stored.version
                    )
                    if before_commit:
                        before_commit()
                answers[name] = "saved"
            except ValidationError as error:
                answers[name] = error.message_dict
            finally:
                connection.close()

        def first_waits():
            first_checked.set()
            first_may_commit.wait(timeout=30)

        first = threading.Thread(
            target=move, args=("first", camp[0], crossing[-1]), kwargs={"before_commit": first_waits}
        )
        first.start()
        first_checked.wait(timeout=30)
        second = threading.Thread(target=lambda: (move("second", crossing[0], china[-1]), second_answered.set()))
        second.start()
        # Without the lock the second is checked and saved at once; with it, it waits for the first.
        second_answered.wait(timeout=2)
        first_may_commit.set()
        first.join(timeout=30)
        second.join(timeout=30)

        assert answers["first"] == "saved"
        assert answers["second"] == {"parent": place_too_deep("the deepest place inside it", 12)}
        assert Place.objects.get(pk=crossing[0].pk).parent_id is None

    def test_a_place_stored_deeper_before_the_rule_may_still_be_edited_marked_and_moved_up(self):
        chain = place_chain(12, name="China", country="CN", latitude=42.5, longitude=129.5)
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))

        renamed = reviewer.patch(
            f"{API}/places/{chain[-1].pk}/", {"name": "Gate 3", "version": chain[-1].version}, format="json"
        )
        marked = reviewer.patch(
            f"{API}/places/{chain[0].pk}/", {"sensitive": True, "version": chain[0].version}, format="json"
        )
        # Coarsened since it was renamed (the place above marked), it is a new version for everyone.
        coarsened = reviewer.get(f"{API}/places/{chain[-1].pk}/").json()["version"]
        assert coarsened == renamed.json()["version"] + 1
        moved_up = reviewer.patch(
            f"{API}/places/{chain[-1].pk}/", {"parent": chain[2].pk, "version": coarsened}, format="json"
        )

        assert (renamed.status_code, marked.status_code, moved_up.status_code) == (200, 200, 200)
        assert Place.objects.get(pk=chain[-1].pk).within_sensitive

    def test_a_new_type_below_the_tenth_level_is_refused_naming_its_parent(self, client, reviewer):
        chain = type_chain(10)
        form = {"slug": "level-11", "name": "Level 11", "description": ""}

        admin_answer = client.post(reverse("admin:incidents_incidenttype_add"), {**form, "parent": str(chain[-1].pk)})
        api_answer = client_for(reviewer).post(
            f"{API}/incident-types/", {**form, "parent": chain[-1].slug}, format="json"
        )
        at_the_tenth = client_for(reviewer).post(
            f"{API}/incident-types/", {**form, "parent": chain[-2].slug}, format="json"
        )

        assert admin_answer.context["adminform"].form.errors["parent"] == type_too_deep("it", 11)
        assert api_answer.status_code == 400
        assert api_answer.json()["parent"] == type_too_deep("it", 11)
        assert at_the_tenth.status_code == 201

    def test_a_type_moved_with_its_sub_types_is_refused_naming_the_deepest(self, reviewer):
        deep, other = type_chain(8), type_chain(3, prefix="other")

        answer = client_for(reviewer).patch(
            f"{API}/incident-types/{other[0].pk}/",
            {"parent": deep[-1].slug, "version": other[0].version},
            format="json",
        )

        assert answer.status_code == 400
        assert answer.json()["parent"] == type_too_deep("the deepest type under it", 11)

    def test_a_type_under_one_of_its_own_sub_types_is_still_a_loop(self, reviewer):
        chain = type_chain(3)

        answer = client_for(reviewer).patch(
            f"{API}/incident-types/{chain[0].pk}/",
            {"parent": chain[-1].slug, "version": chain[0].version},
            format="json",
        )

        assert answer.json()["parent"] == ["A type cannot be its own parent, directly or through others."]


def test_a_source_cannot_cite_itself(client, reviewer):
    source = make_source(title="Daily NK")
    form = {"title": "Daily NK", "kind": "news_article", "url": "", "archive_url": "", "publisher": "", "author": ""}
    form.update(published_on="", language="", cites=str(source.pk), notes="", expected_version=source.version)

    admin_answer = client.post(reverse("admin:incidents_source_change", args=[source.pk]), form)
    api_answer = client_for(reviewer).patch(
        f"{API}/sources/{source.pk}/", {"cites": source.pk, "version": source.version}, format="json"
    )

    message = ["A source cannot cite itself, directly or through others."]
    assert admin_answer.context["adminform"].form.errors["cites"] == message
    assert api_answer.json()["cites"] == message


class TestALoopOfCitations:
    """A source cannot relay itself through others where its writer sees the whole loop. Through a
    source hidden from the writer the loop is accepted, exactly as a chain that ends there: the
    refusal would tell them what the hidden source cites."""

    MESSAGE = ["A source cannot cite itself, directly or through others."]

    @staticmethod
    def make_report_cite(client, writer, report, cited) -> tuple:
        """Both doors' answers to `writer` making `report` cite `cited` (the admin's second)."""
        api_answer = client_for(writer).patch(
            f"{API}/sources/{report.pk}/", {"cites": cited.pk, "version": report.version}, format="json"
        )
        report.refresh_from_db()
        form = {"title": report.title, "kind": "news_article", "cites": str(cited.pk)}
        client.force_login(writer)
        admin_answer = client.post(
            reverse("admin:incidents_source_change", args=[report.pk]), {**form, "expected_version": report.version}
        )
        return api_answer, admin_answer

    @staticmethod
    def chain(confidential: bool) -> tuple[Source, Source]:
        """A report, and an article relaying an intermediary who relays the report."""
        report = make_source(title="UN report")
        intermediary = make_source(title="Intermediary", cites=report, confidential=confidential)
        return report, make_source(title="Article", cites=intermediary)

    def test_refused_where_the_writer_sees_every_source_on_it(self, client):
        report, article = self.chain(confidential=False)

        api_answer, admin_answer = self.make_report_cite(client, make_user(roles.ANALYST), report, article)

        assert api_answer.status_code == 400 and api_answer.json()["cites"] == self.MESSAGE
        assert admin_answer.context["adminform"].form.errors["cites"] == self.MESSAGE
        report.refresh_from_db()
        assert report.cites is None and report.version == 1

    def test_refused_for_a_writer_with_confidential_access(self, client):
        report, article = self.chain(confidential=True)
        insider = make_user(roles.REVIEWER, confidential=True)

        api_answer, admin_answer = self.make_report_cite(client, insider, report, article)

        assert api_answer.status_code == 400 and api_answer.json()["cites"] == self.MESSAGE
        assert admin_answer.context["adminform"].form.errors["cites"] == self.MESSAGE

    def test_through_a_hidden_source_answered_as_a_chain_without_a_loop(self, client):
        report, article = self.chain(confidential=True)
        unrelated_report, unrelated_article = make_source(title="UN report"), make_source(title="Article")
        analyst = make_user(roles.ANALYST)

        answers = self.make_report_cite(client, analyst, report, article)
        unrelated_answers = self.make_report_cite(client, analyst, unrelated_report, unrelated_article)

        assert [answer.status_code for answer in answers] == [answer.status_code for answer in unrelated_answers]
        assert [answer.status_code for answer in answers] == [200, 302]
        differing = {"id": None, "cites": None, "created_at": None, "updated_at": None}
        assert {**answers[0].json(), **differing} == {**unrelated_answers[0].json(), **differing}
        report.refresh_from_db()
        assert report.cites == article


def test_an_incident_ending_before_it_starts_is_refused_on_the_end_date(reviewer):
    body = {
        "title": "Reversed",
        "incident_type": incident_type().slug,
        "date_start": "2023-08-29",
        "date_end": "2023-08-01",
        "people_count_min": 10,
        "people_count_max": 5,
    }

    answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

    assert answer.status_code == 400
    assert {"date_end", "people_count_min"} <= set(answer.json())


class TestAnExactCountIsOneFigure:
    """ "Exactly 500, 300-600" says two things at once: every door refuses it, naming the
    qualifier, and the database refuses it whatever the door."""

    RANGE_MESSAGE = (
        "An exact count is one figure, but 500 is given a range (300-600): choose “About” for a range, "
        "or clear the minimum and maximum."
    )
    NO_FIGURE_MESSAGE = "An exact count needs its figure: give the best estimate, or choose another qualifier."
    FIGURES = {"people_count": 500, "people_count_min": 300, "people_count_max": 600, "count_qualifier": "exact"}

    @pytest.mark.parametrize("model", ["incident", "claim"])
    def test_the_database_refuses_it(self, model):
        incident = make_incident()
        figures = {"people_count": None, "count_qualifier": "exact"}
        with pytest.raises(IntegrityError, match=f"{model}_exact_count_is_one_figure"), transaction.atomic():
            if model == "incident":
                Incident.objects.filter(pk=incident.pk).update(**figures)
            else:
                Claim.objects.create(incident=incident, source=make_source(), **figures)

    def test_in_the_api_for_the_incident_and_its_claims(self, reviewer):
        body = {
            "title": "About 500",
            "incident_type": incident_type().slug,
            "date_start": "2023-10-09",
            "date_end": "2023-10-09",
            **self.FIGURES,
            "claims": [{"source": make_source().pk, "people_count": None, "count_qualifier": "exact"}],
        }

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        assert answer.json()["count_qualifier"] == [self.RANGE_MESSAGE]
        assert answer.json()["claims[0].count_qualifier"] == [self.NO_FIGURE_MESSAGE]
        assert not Incident.objects.filter(title="About 500").exists()

    def test_in_the_admin(self, client, reviewer):
        form = incident_post(**{name: str(value) for name, value in self.FIGURES.items()})

        answer = client.post(reverse("admin:incidents_incident_add"), form)

        assert answer.status_code == 200
        assert answer.context["adminform"].form.errors["count_qualifier"] == [self.RANGE_MESSAGE]
        assert not Incident.objects.exists()

    def test_in_an_import(self, reviewer, tmp_path):
        content = "title,type,date_start,date_end,people_count,people_count_min,people_count_max,count_qualifier\n"
        content += "About 500,forced-repatriation,2023-10-09,2023-10-09,500,300,600,exact\n"

        errors = import_errors(reviewer, tmp_path, content)

        assert f"line 2, column count_qualifier: {self.RANGE_MESSAGE}" in errors

    def test_about_with_the_same_figures_is_taken(self, reviewer):
        incident = make_incident()
        body = {**self.FIGURES, "count_qualifier": "about", "version": incident.version}

        answer = client_for(reviewer).patch(f"{API}/incidents/{incident.public_id}/", body, format="json")

        assert answer.status_code == 200, answer.content
        assert answer.json()["count_qualifier"] == "about"


# (the figures sent without a qualifier, the qualifier they are stored with)
FIGURES_ALONE = [
    ({"people_count": 40}, "exact"),
    ({"people_count": 40, "people_count_min": 40, "people_count_max": 40}, "exact"),
    ({"people_count_min": 40}, "at_least"),
    ({"people_count": 40, "people_count_min": 40}, "at_least"),
    ({"people_count_max": 40}, "at_most"),
    ({"people_count": 40, "people_count_max": 40}, "at_most"),
    ({"people_count_min": 30, "people_count_max": 50}, "about"),
    ({"people_count": 40, "people_count_min": 30, "people_count_max": 50}, "about"),
    ({"people_count": 40, "people_count_min": 30}, "about"),
    ({}, "unknown"),
]
FIGURES_ALONE_IDS = [f"{'+'.join(figures) or 'none'}-{qualifier}" for figures, qualifier in FIGURES_ALONE]
NO_FIGURES = {"people_count": None, "people_count_min": None, "people_count_max": None}


class TestAQualifierLeftOutIsReadFromTheFigures:
    """ "China deported 40 North Koreans" sent without a qualifier was stored as "unknown 40": every
    door now reads an omitted (or blank) qualifier from the figures, and keeps one given as given."""

    @pytest.mark.parametrize(("figures", "qualifier"), FIGURES_ALONE, ids=FIGURES_ALONE_IDS)
    def test_in_the_api_for_the_incident_and_its_claims(self, reviewer, figures, qualifier):
        body = {
            "title": "Deported",
            "incident_type": incident_type().slug,
            "date_start": "2023-10-09",
            "date_end": "2023-10-09",
            **NO_FIGURES,
            **figures,
            "claims": [{"source": make_source().pk, **figures, "excerpt": "China deported 40 North Koreans"}],
        }

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 201, answer.content
        assert answer.json()["count_qualifier"] == qualifier
        assert answer.json()["claims"][0]["count_qualifier"] == qualifier
        incident = Incident.objects.get(title="Deported")
        assert (incident.count_qualifier, incident.claims.get().count_qualifier) == (qualifier, qualifier)

    @pytest.mark.parametrize("qualifier", ["unknown", "about", "at_least", "at_most"])
    def test_a_qualifier_given_is_kept_in_the_api(self, reviewer, qualifier):
        body = {
            "title": "Deported",
            "incident_type": incident_type().slug,
            "date_start": "2023-10-09",
            "date_end": "2023-10-09",
            "people_count": 40,
            "count_qualifier": qualifier,
            "claims": [{"source": make_source().pk, "people_count": 40, "count_qualifier": qualifier}],
        }

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 201, answer.content
        assert answer.json()["count_qualifier"] == qualifier
        assert answer.json()["claims"][0]["count_qualifier"] == qualifier

    def test_a_change_leaving_it_out_keeps_the_stored_one(self, reviewer):
        incident = make_incident(people_count=40, count_qualifier="about")
        claim = make_claim(incident=incident, people_count=40, count_qualifier="unknown")
        body = {
            "people_count": 45,
            "claims": [{"id": claim.pk, "source": claim.source_id, "people_count": 45}],
            "version": incident.version,
        }

        answer = client_for(reviewer).patch(f"{API}/incidents/{incident.public_id}/", body, format="json")

        assert answer.status_code == 200, answer.content
        assert (answer.json()["count_qualifier"], answer.json()["claims"][0]["count_qualifier"]) == ("about", "unknown")

    def test_in_the_admin_it_is_offered_blank_and_read_from_the_figures(self, client, reviewer):
        page = client.get(reverse("admin:incidents_incident_add"))
        offered = page.context["adminform"].form.fields["count_qualifier"]
        assert offered.choices[0] == ("", "From the figures")
        assert page.context["adminform"].form["count_qualifier"].value() == ""
        form = incident_post(
            count_qualifier="",
            people_count="",
            people_count_min="40",
            claims=[{"source": make_source().pk, "people_count": 40, "count_qualifier": ""}],
        )

        answer = client.post(reverse("admin:incidents_incident_add"), form)

        assert answer.status_code == 302, answer.context and answer.context["adminform"].form.errors
        incident = Incident.objects.get()
        assert (incident.count_qualifier, incident.claims.get().count_qualifier) == ("at_least", "exact")

    def test_in_the_admin_a_qualifier_chosen_is_shown_and_kept(self, client, reviewer):
        incident = make_incident(people_count=40, count_qualifier="unknown")
        claim = make_claim(incident=incident, people_count=40, count_qualifier="unknown")

        page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
        assert page.context["adminform"].form["count_qualifier"].value() == "unknown"
        form = incident_post(incident=incident, count_qualifier="unknown", people_count="40", claims=[claim])
        answer = client.post(reverse("admin:incidents_incident_change", args=[incident.pk]), form)

        assert answer.status_code == 302, answer.context and answer.context["adminform"].form.errors
        incident.refresh_from_db()
        claim.refresh_from_db()
        assert (incident.count_qualifier, claim.count_qualifier) == ("unknown", "unknown")

    def test_in_an_import_a_blank_cell_or_no_column_reads_the_figures(self, reviewer, tmp_path):
        content = "title,type,date_start,date_end,people_count,people_count_min,count_qualifier\n"
        content += "Forty,forced-repatriation,2023-10-09,2023-10-09,40,,\n"
        content += "Forty or more,forced-repatriation,2023-10-09,2023-10-09,,40,\n"
        content += "Unknown forty,forced-repatriation,2023-10-09,2023-10-09,40,,unknown\n"
        run_import(reviewer, tmp_path, content)
        run_import(
            reviewer,
            tmp_path,
            "title,type,date_start,date_end,people_count\nNo column,forced-repatriation,2023-10-09,2023-10-09,40\n",
        )

        qualifiers = dict(Incident.objects.values_list("title", "count_qualifier"))
        assert qualifiers == {
            "Forty": "exact",
            "Forty or more": "at_least",
            "Unknown forty": "unknown",
            "No column": "exact",
        }

    def test_an_unknown_figure_stays_unknown_through_export_and_import(self, reviewer, tmp_path):
        incident = make_incident(people_count=40, count_qualifier="unknown")
        exported = export(reviewer, tmp_path)

        output = run_import(reviewer, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 1 unchanged." in output
        incident.refresh_from_db()
        assert (incident.count_qualifier, incident.people_count) == ("unknown", 40)
        assert export(reviewer, tmp_path, "again.csv") == exported

    def test_a_bulk_create_reads_it_too(self):
        # Django's bulk_create calls no save(): the tests' large exports write incidents so.
        fields = {"incident_type": incident_type(), "date_start": date(2023, 1, 1), "date_end": date(2023, 1, 1)}
        Incident.objects.bulk_create([Incident(title="Forty", people_count=40, **fields)])
        incident = Incident.objects.get(title="Forty")
        Claim.objects.bulk_create([Claim(incident=incident, source=make_source(), people_count_max=40)])

        assert (incident.count_qualifier, incident.claims.get().count_qualifier) == ("exact", "at_most")

    @pytest.mark.parametrize("model", ["incident", "claim"])
    def test_the_database_refuses_a_blank_one(self, model):
        incident = make_incident()
        with pytest.raises(IntegrityError, match=f"{model}_count_qualifier_known"), transaction.atomic():
            if model == "incident":
                Incident.objects.filter(pk=incident.pk).update(count_qualifier="")
            else:
                Claim.objects.filter(pk=make_claim(incident=incident).pk).update(count_qualifier="")


class TestDatesFitTheirPrecision:
    """ "Month, 1 to 15 July 2021" read "July 2021" on every page: a Month is whole months, a Year
    whole years, a Week at most seven days; every door refuses other dates naming the precision,
    and the database refuses them whatever the door."""

    MONTH_MESSAGE = (
        "A Month is whole months, from a month's first day to a month's last: 2021-07-01 to 2021-07-15 is not. "
        "Give 2021-07-01 to 2021-07-31, or choose Range for part of a month."
    )

    @pytest.mark.parametrize(
        ("start", "end", "precision"),
        [
            (date(2021, 7, 1), date(2021, 7, 15), "month"),
            (date(2021, 7, 2), date(2021, 8, 31), "month"),
            (date(2021, 1, 1), date(2021, 6, 30), "year"),
            (date(2021, 7, 5), date(2021, 7, 12), "week"),
        ],
    )
    def test_the_database_refuses_them(self, start, end, precision):
        incident = make_incident()
        with pytest.raises(IntegrityError, match="incident_dates_fit_their_precision"), transaction.atomic():
            Incident.objects.filter(pk=incident.pk).update(date_start=start, date_end=end, date_precision=precision)

    @pytest.mark.parametrize(
        ("start", "end", "precision", "label"),
        [
            (date(2021, 7, 1), date(2021, 9, 30), "month", "July 2021 – September 2021"),
            (date(2020, 1, 1), date(2021, 12, 31), "year", "2020 – 2021"),
            (date(2021, 7, 5), date(2021, 7, 11), "week", "Week of 5 July 2021 – 11 July 2021"),
            (date(2021, 7, 1), date(2021, 7, 15), "range", "1 July 2021 – 15 July 2021"),
            (date(2021, 7, 1), date(2021, 7, 3), "day", "1 July 2021 – 3 July 2021"),
        ],
    )
    def test_dates_that_fit_are_taken(self, reviewer, start, end, precision, label):
        incident = make_incident()
        body = {"date_start": str(start), "date_end": str(end), "date_precision": precision, "version": 1}

        answer = client_for(reviewer).patch(f"{API}/incidents/{incident.public_id}/", body, format="json")

        assert answer.status_code == 200, answer.content
        assert answer.json()["date_label"] == label

    def test_in_the_api(self, reviewer):
        incident = make_incident()
        body = {"date_start": "2021-07-01", "date_end": "2021-07-15", "date_precision": "month", "version": 1}

        answer = client_for(reviewer).patch(f"{API}/incidents/{incident.public_id}/", body, format="json")

        assert answer.status_code == 400
        assert answer.json() == {"date_precision": [self.MONTH_MESSAGE]}
        incident.refresh_from_db()
        assert (incident.date_precision, incident.version) == ("day", 1)

    def test_in_the_admin(self, client, reviewer):
        form = incident_post(date_start="2021-07-01", date_end="2021-07-15", date_precision="month")

        answer = client.post(reverse("admin:incidents_incident_add"), form)

        assert answer.status_code == 200
        assert answer.context["adminform"].form.errors["date_precision"] == [self.MONTH_MESSAGE]
        assert not Incident.objects.exists()

    def test_in_an_import(self, reviewer, tmp_path):
        content = "title,type,date_start,date_end,date_precision\n"
        content += "In July,forced-repatriation,2021-07-01,2021-07-15,month\n"

        errors = import_errors(reviewer, tmp_path, content)

        assert f"line 2, column date_precision: {self.MONTH_MESSAGE}" in errors


# The migration that adds the rule's constraint, and the one before it.
PRECISION_RULE = importlib.import_module("incidents.migrations.0065_dates_fit_their_precision").Migration
BEFORE_THE_PRECISION_RULE = PRECISION_RULE.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reads_dates_their_precision_does_not_say_as_a_range():
    half_month, whole_month = make_incident(), make_incident()
    Incident.objects.filter(pk=whole_month.pk).update(
        date_start=date(2021, 7, 1), date_end=date(2021, 7, 31), date_precision="month"
    )
    migrate_incidents_back_to(BEFORE_THE_PRECISION_RULE)
    try:
        Incident.objects.filter(pk=half_month.pk).update(
            date_start=date(2021, 7, 1), date_end=date(2021, 7, 15), date_precision="month"
        )
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert {
        incident.pk: (incident.date_precision, incident.date_label, incident.version)
        for incident in Incident.objects.all()
    } == {
        half_month.pk: ("range", "1 July 2021 – 15 July 2021", 2),
        whole_month.pk: ("month", "July 2021", 1),
    }
    events = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=half_month)
    assert list(events.order_by("pgh_id").values_list("date_precision", flat=True))[-2:] == ["month", "range"]


# The migration that adds the rule, and the one before it.
EXACT_COUNT_RULE = "0064_exact_count_is_one_figure"
BEFORE_THE_RULE = importlib.import_module(f"incidents.migrations.{EXACT_COUNT_RULE}").Migration.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reads_exact_counts_given_a_range_as_about_keeping_the_figures_and_their_history():
    ranged, unfigured, exact = make_incident(), make_incident(), make_incident(people_count=40)
    claim = make_claim(incident=exact, people_count=40, count_qualifier="exact")
    migrate_incidents_back_to(BEFORE_THE_RULE)
    try:
        Incident.objects.filter(pk=ranged.pk).update(people_count=500, people_count_min=300, people_count_max=600)
        Incident.objects.filter(pk=unfigured.pk).update(people_count=None)
        Claim.objects.filter(pk=claim.pk).update(people_count_max=45)
    finally:
        call_command("migrate", "incidents", verbosity=0)

    counts = {
        incident.pk: (incident.count_qualifier, incident.people_count, incident.people_count_min, incident.version)
        for incident in Incident.objects.all()
    }
    assert counts == {
        ranged.pk: ("about", 500, 300, 2),
        unfigured.pk: ("unknown", None, None, 2),
        # Its claim changed: a new version, so that syncs read it again (and another when migration
        # 0075 gave the claim its date's precision).
        exact.pk: ("exact", 40, None, 3),
    }
    claim.refresh_from_db()
    assert (claim.count_qualifier, claim.people_count, claim.people_count_max) == ("about", 40, 45)
    # What the analysts had entered is in the history.
    events = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=ranged)
    assert list(events.order_by("pgh_id").values_list("count_qualifier", flat=True))[-3:] == ["exact", "about", "about"]


class TestPlaceCountryComesFromItsParent:
    def test_a_place_without_a_country_takes_its_nearest_ancestors(self):
        china = make_place(name="China", kind="country", country="CN")
        jilin = make_place(name="Jilin", kind="province", parent=china, country="")
        yanji = make_place(name="Yanji", parent=jilin, country="")
        tumen = make_place(name="Tumen", parent=jilin, country="KP")

        assert (jilin.country, yanji.country, tumen.country) == ("CN", "CN", "KP")

    def test_places_below_take_a_country_given_later(self):
        china = make_place(name="China", kind="country", country="")
        jilin = make_place(name="Jilin", kind="province", parent=china, country="")
        yanji = make_place(name="Yanji", parent=jilin, country="")
        sinuiju = make_place(name="Sinuiju", parent=jilin, country="KP")

        china.country = "CN"
        china.save()

        countries = dict(Place.objects.values_list("name", "country"))
        assert [countries[place.name] for place in (jilin, yanji, sinuiju)] == ["CN", "CN", "KP"]

    def test_through_the_admin_and_the_statistics(self, client, reviewer):
        china = make_place(name="China", kind="country", country="CN")
        client.post(
            reverse("admin:incidents_place_add"), {**PLACE_FORM, "name": "Jilin", "parent": china.pk, "country": ""}
        )
        jilin = Place.objects.get(name="Jilin")
        make_incident(places=[jilin])

        stats = client_for().get(f"{API}/incidents/stats/?group_by=country").json()

        assert jilin.country == "CN"
        assert [(group["group"], group["incidents"]) for group in stats["results"]] == [("CN", 1)]

    def test_the_migration_fills_the_places_entered_before(self):
        china = make_place(name="China", kind="country", country="CN")
        jilin = make_place(name="Jilin", kind="province", parent=china)
        yanji = make_place(name="Yanji", parent=jilin)
        Place.objects.filter(pk__in=[jilin.pk, yanji.pk]).update(country="")
        migration = importlib.import_module("incidents.migrations.0015_constraint_messages_and_place_countries")

        migration.inherit_countries(apps, None)

        assert set(Place.objects.filter(pk__in=[jilin.pk, yanji.pk]).values_list("country", flat=True)) == {"CN"}


class TestPlaceCountryFollowsItsParent:
    """A country a place took from its parent was a copy kept for good: a province entered under
    China and moved under North Korea, or the places inside a country whose code was corrected,
    kept the old country, and their incidents were counted, filtered and exported in it."""

    @pytest.fixture
    def analyst(self):
        return client_for(make_user(roles.ANALYST))

    @pytest.fixture
    def tree(self, analyst):
        """China and North Korea; Jilin entered under China without a country, Yanji under Jilin
        likewise, Tumen under Jilin with its own (North Korea's), and an incident at Yanji."""
        china = make_place(name="China", kind="country", country="CN")
        north_korea = make_place(name="North Korea", kind="country", country="KP")
        jilin = analyst.post(f"{API}/places/", {"name": "Jilin", "kind": "province", "parent": china.pk}, format="json")
        yanji = analyst.post(f"{API}/places/", {"name": "Yanji", "parent": jilin.json()["id"]}, format="json")
        tumen = analyst.post(
            f"{API}/places/", {"name": "Tumen", "parent": jilin.json()["id"], "country": "KP"}, format="json"
        )
        assert (jilin.status_code, yanji.status_code, tumen.status_code) == (201, 201, 201)
        places = {place.name: place for place in Place.objects.all()}
        make_incident(title="At Yanji", places=[places["Yanji"]])
        return {"China": china, "North Korea": north_korea, **places}

    @staticmethod
    def countries() -> dict[str, tuple[str, bool]]:
        rows = Place.objects.values_list("name", "country", "country_inherited")
        return {name: (country, inherited) for name, country, inherited in rows}

    def test_a_country_taken_from_the_parent_is_said_so(self, analyst, tree):
        answer = analyst.get(f"{API}/places/{tree['Yanji'].pk}/").json()

        assert (answer["country"], answer["country_inherited"]) == ("CN", True)
        assert self.countries() == {
            "China": ("CN", False),
            "North Korea": ("KP", False),
            "Jilin": ("CN", True),
            "Yanji": ("CN", True),
            "Tumen": ("KP", False),
        }

    def test_a_place_moved_takes_its_new_parents_country_down_to_places_with_their_own(self, analyst, tree):
        jilin = analyst.get(f"{API}/places/{tree['Jilin'].pk}/").json()
        incident = Incident.objects.get(title="At Yanji")

        # The body as read, its parent changed: the country it was shown is the one it followed.
        moved = analyst.put(f"{API}/places/{jilin['id']}/", {**jilin, "parent": tree["North Korea"].pk}, format="json")

        assert moved.status_code == 200, moved.content
        assert (moved.json()["country"], moved.json()["country_inherited"]) == ("KP", True)
        assert self.countries()["Yanji"] == ("KP", True)
        # The incident at Yanji is counted, filtered and exported in North Korea now, and a sync
        # reads it again.
        anonymous = client_for()
        stats = anonymous.get(f"{API}/incidents/stats/?group_by=country").json()["results"]
        assert [(group["group"], group["incidents"]) for group in stats] == [("KP", 1)]
        assert [row["title"] for row in anonymous.get(f"{API}/incidents/?country=KP").json()["results"]] == ["At Yanji"]
        assert anonymous.get(f"{API}/incidents/?country=CN").json()["results"] == []
        assert [row["countries"] for row in read_csv(download(anonymous))] == ["KP"]
        assert Incident.objects.get(pk=incident.pk).version > incident.version
        # Yanji's own version moved, and its history says when it changed country.
        yanji = Place.objects.get(name="Yanji")
        assert yanji.version == tree["Yanji"].version + 1
        events = apps.get_model("incidents", "PlaceEvent").objects.filter(pgh_obj=yanji).order_by("pgh_id")
        assert list(events.values_list("country", flat=True)) == ["CN", "KP"]

    def test_a_country_corrected_is_taken_by_the_places_that_follow_it(self, analyst, tree):
        china = analyst.get(f"{API}/places/{tree['China'].pk}/").json()

        answer = analyst.put(f"{API}/places/{china['id']}/", {**china, "country": "TW"}, format="json")

        assert answer.status_code == 200, answer.content
        assert self.countries() == {
            "China": ("TW", False),
            "North Korea": ("KP", False),
            "Jilin": ("TW", True),
            "Yanji": ("TW", True),
            "Tumen": ("KP", False),
        }

    def test_a_country_its_writer_gives_is_kept_when_its_parent_moves(self, analyst, tree):
        yanji = analyst.get(f"{API}/places/{tree['Yanji'].pk}/").json()
        given = analyst.put(f"{API}/places/{yanji['id']}/", {**yanji, "country": "KR"}, format="json")
        jilin = analyst.get(f"{API}/places/{tree['Jilin'].pk}/").json()

        moved = analyst.put(f"{API}/places/{jilin['id']}/", {**jilin, "parent": tree["North Korea"].pk}, format="json")

        assert (given.status_code, moved.status_code) == (200, 200)
        assert given.json()["country_inherited"] is False
        assert self.countries()["Jilin"] == ("KP", True)
        assert self.countries()["Yanji"] == ("KR", False)

    def test_a_place_moved_out_of_every_place_keeps_its_country_as_its_own(self, analyst, tree):
        jilin = analyst.get(f"{API}/places/{tree['Jilin'].pk}/").json()

        answer = analyst.put(f"{API}/places/{jilin['id']}/", {**jilin, "parent": None}, format="json")

        assert answer.status_code == 200, answer.content
        assert self.countries()["Jilin"] == ("CN", False)

    def test_an_edit_read_before_the_country_followed_meets_a_conflict(self, analyst, tree):
        yanji = analyst.get(f"{API}/places/{tree['Yanji'].pk}/").json()
        jilin = analyst.get(f"{API}/places/{tree['Jilin'].pk}/").json()
        analyst.put(f"{API}/places/{jilin['id']}/", {**jilin, "parent": tree["North Korea"].pk}, format="json")

        # Sent back, its old country would read as one its writer gave.
        stale = analyst.put(f"{API}/places/{yanji['id']}/", {**yanji, "name": "Yanji City"}, format="json")

        assert stale.status_code == 409
        assert self.countries()["Yanji"] == ("KP", True)

    def test_in_the_admin_the_form_says_so_and_a_move_follows(self, client, reviewer, tree):
        change = reverse("admin:incidents_place_change", args=[tree["Jilin"].pk])
        page = client.get(change).content.decode()
        assert "Country from the place containing it" in page

        answer = client.post(
            change,
            {
                **PLACE_FORM,
                "name": "Jilin",
                "kind": "province",
                "parent": tree["North Korea"].pk,
                "country": "CN",
                "expected_version": tree["Jilin"].version,
            },
        )

        assert answer.status_code == 302, answer.content.decode()[-2000:]
        assert self.countries()["Jilin"] == ("KP", True)
        assert self.countries()["Yanji"] == ("KP", True)

    def test_the_migration_marks_the_places_whose_country_is_their_parents(self, tree):
        Place.objects.update(country_inherited=False)
        elsewhere = make_place(name="Dandong", parent=tree["North Korea"], country="CN")
        migration = importlib.import_module("incidents.migrations.0103_place_country_follows_its_parent")
        with connection.cursor() as cursor:
            cursor.execute(migration.MARK_FOLLOWERS_SQL)

        assert self.countries() == {
            "China": ("CN", False),
            "North Korea": ("KP", False),
            "Jilin": ("CN", True),
            "Yanji": ("CN", True),
            "Tumen": ("KP", False),
            elsewhere.name: ("CN", False),
        }


def test_the_incident_form_offers_to_add_a_place(client):
    client.force_login(make_user(roles.ANALYST))

    page = client.get(reverse("admin:incidents_incident_add")).content.decode()

    add_place = reverse("admin:incidents_place_add")
    assert 'id="add_id_place_list"' in page and f'href="{add_place}?_to_field=id&amp;_popup=1&amp;' in page


def test_a_viewer_is_not_offered_to_add_a_place(client):
    client.force_login(make_user(roles.VIEWER))

    page = client.get(reverse("admin:incidents_incident_change", args=[make_incident(date_start=date(2023, 1, 1)).pk]))

    assert 'id="add_id_place_list"' not in page.content.decode()


class TestNestedRecordsNameTheirField:
    def test_a_claim_ending_before_it_starts_in_the_api(self, reviewer):
        claim = {"source": make_source().pk, "date_start": "2023-09-18", "date_end": "2023-09-01"}
        body = {
            "title": "Repatriation of 40 from Tumen",
            "incident_type": incident_type().slug,
            "date_start": "2023-09-18",
            "date_end": "2023-09-18",
            "claims": [claim],
            "victim_groups": [{"count": -1}],
        }

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        errors = answer.json()
        # Field rules first (the count's sign), then the services' (the claim's dates) once they pass.
        assert errors["victim_groups[0].count"] == ["Ensure this value is greater than or equal to 0."]
        body["victim_groups"] = [{"count": 3}]
        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 400 and "claims[0].date_end" in answer.json()

    def test_a_claim_ending_before_it_starts_in_the_admin(self, client, reviewer):
        from tests.test_admin import incident_post

        form = incident_post(claims=[{"source": make_source().pk}])
        form.update({"claims-0-date_start": "2023-09-18", "claims-0-date_end": "2023-09-01"})

        answer = client.post(reverse("admin:incidents_incident_add"), form)

        (claim_errors,) = [errors for errors in answer.context["inline_admin_formsets"][2].formset.errors if errors]
        assert "date_end" in claim_errors and not Incident.objects.exists()


class TestIncidentTypeNamesAreUniqueWhateverTheirCase:
    """As places' in one parent and organizations' names: "arrest" beside "Arrest" counted one kind of
    incident under two types."""

    MESSAGE = (
        "“Forced repatriation” is already an incident type's name (names are told apart whatever their "
        "case): use that type, or name this one apart."
    )

    def test_in_the_admin(self, client, reviewer):
        form = {"slug": "forced-return", "name": "FORCED REPATRIATION", "parent": "", "description": ""}

        answer = client.post(reverse("admin:incidents_incidenttype_add"), form)

        assert answer.context["adminform"].form.errors["name"] == [self.MESSAGE]
        assert not IncidentType.objects.filter(slug="forced-return").exists()

    def test_in_the_api(self, reviewer):
        writer = client_for(reviewer)

        created = writer.post(
            f"{API}/incident-types/", {"slug": "forced-return", "name": "forced repatriation"}, format="json"
        )
        renamed = writer.patch(
            f"{API}/incident-types/{incident_type('deportation').pk}/", {"name": "Forced Repatriation"}, format="json"
        )

        assert (created.status_code, created.json()) == (400, {"name": [self.MESSAGE]})
        assert (renamed.status_code, renamed.json()) == (400, {"name": [self.MESSAGE]})
        assert incident_type("deportation").name == "Deportation"

    def test_the_database_refuses_it(self):
        with pytest.raises(IntegrityError, match="incident_type_name_unique"), transaction.atomic():
            IncidentType.objects.create(slug="forced-return", name="forced REPATRIATION")


class TestListsOfNamesHoldAtMostOneHundred:
    NAMES = [f"Name {number}" for number in range(101)]

    def test_in_the_admin(self, client, reviewer):
        place = client.post(
            reverse("admin:incidents_place_add"), {**PLACE_FORM, "alternate_names": "\n".join(self.NAMES)}
        )
        organization = client.post(
            reverse("admin:incidents_organization_add"),
            {"name": "Ministry", "kind": "government", "aliases": "\n".join(self.NAMES)},
        )

        assert place.context["adminform"].form.errors["alternate_names"] == [
            "At most 100 other names; this list has 101. Keep the names readers search by."
        ]
        assert organization.context["adminform"].form.errors["aliases"] == [
            "At most 100 aliases; this list has 101. Keep the names readers search by."
        ]
        assert not Place.objects.filter(name="Sinuiju").exists()
        assert not Organization.objects.filter(name="Ministry").exists()

    def test_in_the_api(self, reviewer):
        writer = client_for(reviewer)
        place = make_place(name="Onsong", alternate_names=["온성"])

        created = writer.post(
            f"{API}/organizations/", {"name": "Ministry", "kind": "government", "aliases": self.NAMES}, format="json"
        )
        changed = writer.patch(f"{API}/places/{place.pk}/", {"alternate_names": self.NAMES}, format="json")

        assert (created.status_code, created.json()) == (
            400,
            {"aliases": ["At most 100 aliases; this list has 101. Keep the names readers search by."]},
        )
        assert (changed.status_code, changed.json()) == (
            400,
            {"alternate_names": ["At most 100 other names; this list has 101. Keep the names readers search by."]},
        )
        place.refresh_from_db()
        assert place.alternate_names == ["온성"]

    def test_one_hundred_are_taken(self, reviewer):
        answer = client_for(reviewer).post(
            f"{API}/organizations/",
            {"name": "Ministry", "kind": "government", "aliases": self.NAMES[:100]},
            format="json",
        )
        assert answer.status_code == 201

    @pytest.mark.parametrize(
        ("model", "field", "constraint"),
        [
            (Place, "alternate_names", "place_alternate_names_count"),
            (Organization, "aliases", "organization_aliases_count"),
        ],
    )
    def test_the_database_refuses_more(self, model, field, constraint):
        record = make_place() if model is Place else make_organization()
        with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
            model.objects.filter(pk=record.pk).update(**{field: self.NAMES})


BEFORE_TYPE_NAMES_UNIQUE_WHATEVER_THEIR_CASE = "0090_statistics_best_estimate_within_range"


@pytest.mark.django_db(transaction=True)
def test_the_migration_stops_at_type_names_alike_but_for_case_and_at_lists_too_long():
    place = make_place(name="Onsong")
    organization = make_organization(name="Ministry")
    migrate_incidents_back_to(BEFORE_TYPE_NAMES_UNIQUE_WHATEVER_THEIR_CASE)
    try:
        IncidentType.objects.create(slug="deportation-2", name="DEPORTATION")
        Place.objects.filter(pk=place.pk).update(alternate_names=[f"Name {number}" for number in range(101)])
        Organization.objects.filter(pk=organization.pk).update(aliases=[f"Alias {number}" for number in range(102)])
        with pytest.raises(RuntimeError) as refused:
            call_command("migrate", "incidents", verbosity=0)
        assert str(refused.value) == (
            "Incident types whose names differ only in case: Deportation / DEPORTATION; "
            f"The place Onsong (#{place.pk}) has 101 other names; "
            f"The organization Ministry (#{organization.pk}) has 102 aliases. "
            "Rename one of each such type, or merge them; keep at most 100 names in a list; then migrate again."
        )
        IncidentType.objects.filter(slug="deportation-2").delete()
        Place.objects.filter(pk=place.pk).update(alternate_names=[])
        Organization.objects.filter(pk=organization.pk).update(aliases=[])
    finally:
        call_command("migrate", "incidents", verbosity=0)

    with pytest.raises(IntegrityError), transaction.atomic():
        IncidentType.objects.create(slug="deportation-2", name="DEPORTATION")
