"""The admin's pages around the incident form, through the Django test client: history as people
read it, changelist URLs that confirm nothing hidden, responses that follow their incidents, the
actions each role is offered, and the site's own name and breadcrumbs."""

import re
from datetime import date
from urllib.parse import urlencode

import pghistory
import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse

from incidents import roles
from incidents.history import set_insert_triggers
from incidents.models import Claim, Response, Source, Verification
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.form_support import saved_unchanged


def history_url(obj):
    return reverse(f"admin:incidents_{obj._meta.model_name}_history", args=[obj.pk])


def changelist(model_name: str) -> str:
    return reverse(f"admin:incidents_{model_name}_changelist")


@pytest.fixture
def reviewer(client):
    """A reviewer without confidential access, logged in."""
    user = make_user(roles.REVIEWER)
    client.force_login(user)
    return user


class TestHistoryReadsLikeTheForm:
    def test_a_save_that_changes_nothing_leaves_no_row(self, client, reviewer):
        incident = make_incident()
        claim = make_claim(incident=incident, source=make_source(title="Daily NK"))
        claim.save()  # moves updated_at only

        page = client.get(history_url(incident)).content.decode()

        assert page.count("Claim (Daily NK)") == 1
        assert "Claim (Daily NK) changed" not in page

    def test_fields_and_choices_read_as_labels(self, client, reviewer):
        incident = make_incident()
        make_claim(incident=incident, source_connection="third_party", count_qualifier="at_least")

        page = client.get(history_url(incident)).content.decode()

        assert "<strong>Source connection</strong>: — → Third party" in page
        assert "<strong>Count qualifier</strong>: — → At least" in page
        assert "third_party" not in page

    def test_linked_records_are_named(self, client, reviewer):
        incident = make_incident(places=[make_place(name="Yanji")])
        response = Response.objects.create(
            organization=make_organization(name="UNHCR"), kind="statement", date=date(2023, 9, 1)
        )
        response.incidents.add(incident)
        incident.places.clear()

        page = client.get(history_url(incident)).content.decode()

        assert "Place: Yanji added" in page and "Place: Yanji removed" in page
        assert f"Response: {response} linked" in page
        assert "IncidentPlace" not in page and "Response_incidents" not in page

    def test_the_import_file_is_shown(self, client, reviewer):
        incident = make_incident(title="Before")
        with pghistory.context(import_file="partner-2023-09.csv"):
            incident.title = "After"
            incident.save()

        page = client.get(history_url(incident)).content.decode()

        assert "Imported from partner-2023-09.csv" in page

    def test_the_history_of_a_public_source_tells_nothing_of_a_hidden_one_it_cites(self, client, reviewer):
        # Everywhere else the relay cites nothing, to this reviewer (`"cites": null`, a chain that
        # ends without a word): its history must not say that it cites a record they may not see.
        hidden = make_source(title="Informant testimony", confidential=True)
        relay = make_source(title="Relay", cites=hidden)
        relay.title = "Relay, corrected"
        relay.save()
        relay.cites = None
        relay.save()

        page = client.get(history_url(relay)).content.decode()

        assert "<strong>Title</strong>: Relay → Relay, corrected" in page
        assert "Cites" not in page and "a record you may not see" not in page
        assert page.count("Source changed") == 1
        assert f"#{hidden.pk}" not in page and "Informant testimony" not in page

    def test_a_reader_with_confidential_access_reads_which_confidential_source_it_cites(self, client):
        client.force_login(make_user(roles.REVIEWER, confidential=True))
        relay = make_source(title="Relay")
        relay.cites = make_source(title="Informant testimony", confidential=True)
        relay.save()

        page = client.get(history_url(relay)).content.decode()

        assert "<strong>Cites</strong>: — → Informant testimony" in page

    def test_the_history_of_a_response_tells_nothing_of_the_hidden_source_it_names(self, client, reviewer):
        # Its `source` reads empty to this reviewer, on its page and in the API: so in its history.
        response = Response.objects.create(
            organization=make_organization(name="MOFA"), kind="statement", date=date(2023, 9, 1)
        )
        response.incidents.add(make_incident())
        response.source = make_source(title="Informant testimony", confidential=True)
        response.save()
        response.description = "We deny it."
        response.source = make_source(title="Daily NK")
        response.save()

        page = client.get(history_url(response)).content.decode()

        assert page.count("Response changed") == 1
        assert "<strong>Source</strong>: — → Daily NK" in page
        assert "a record you may not see" not in page and "Informant testimony" not in page

    # Each write its own transaction, as each request is: a test transaction gives every event one time.
    @pytest.mark.django_db(transaction=True)
    @pytest.mark.parametrize("shown_by", ["linking a public incident", "its incident made public"])
    def test_a_response_shows_no_state_it_had_while_all_its_incidents_were_confidential(self, client, shown_by):
        # Hidden from this reviewer while it concerned only the confidential arrest, its first
        # description named the informant; redacted before it was shown to them, it read on.
        name = "Kim Chol-su of Hyesan"
        arrest = make_incident(title="Arrest", confidential=True)
        with transaction.atomic():
            response = Response.objects.create(
                organization=make_organization(name="MOFA"),
                kind="statement",
                date=date(2023, 9, 1),
                description=f"We protest the arrest of {name}.",
            )
            response.incidents.add(arrest)
        response.description = "We protest an arrest."
        response.save()
        if shown_by == "linking a public incident":
            response.incidents.add(make_incident(title="Deportation"))
        else:
            arrest.confidential = False
            arrest.save()
        response.description = "We protest the arrests."
        response.save()
        reviewer = make_user(roles.REVIEWER)

        client.force_login(reviewer)
        page = client.get(history_url(response)).content.decode()

        # Its states while hidden are left out: it appears, at its first change since, as created.
        assert name not in page and "We protest an arrest." not in page
        assert page.count("Response created") == 1 and "Response changed" not in page
        assert "<strong>Description</strong>: — → We protest the arrests." in page
        # Readers with Confidential access read every state.
        client.force_login(make_user(roles.REVIEWER, confidential=True))
        page = client.get(history_url(response)).content.decode()
        assert f"We protest the arrest of {name}. → We protest an arrest." in page
        assert "We protest an arrest. → We protest the arrests." in page

    @pytest.mark.django_db(transaction=True)
    def test_a_response_about_an_incident_without_history_reads_it_as_it_is(self, client):
        # Demo data records no insert history: a public incident with no recorded state is public,
        # and a response about it shows its whole history, as it did.
        with transaction.atomic():
            set_insert_triggers(enabled=False)
            deportation = make_incident(title="Deportation")
        with transaction.atomic():
            response = Response.objects.create(
                organization=make_organization(name="MOFA"), kind="statement", date=date(2023, 9, 1)
            )
            response.incidents.add(deportation)
        response.description = "We protest the deportation."
        response.save()

        client.force_login(make_user(roles.REVIEWER))
        page = client.get(history_url(response)).content.decode()

        assert page.count("Response created") == 1 and page.count("Response changed") == 1
        assert "<strong>Description</strong>:  → We protest the deportation." in page


class TestChangelistURLs:
    @pytest.mark.parametrize(
        ("model_name", "parameter"),
        [("source", "cites__id__exact"), ("response", "incidents__id__exact")],
    )
    def test_a_free_lookup_answers_alike_for_a_hidden_id_and_a_missing_one(
        self, client, reviewer, model_name, parameter
    ):
        hidden_source = make_source(title="Informant testimony", confidential=True)
        relay = make_source(cites=hidden_source)
        hidden_incident = make_incident(confidential=True)
        Response.objects.create(
            organization=make_organization(), kind="statement", date=date(2023, 9, 1)
        ).incidents.add(hidden_incident, make_incident())
        hidden_id = {"cites__id__exact": relay.cites_id, "incidents__id__exact": hidden_incident.pk}[parameter]

        hidden = client.get(changelist(model_name), {parameter: hidden_id, "q": "a"})
        missing = client.get(changelist(model_name), {parameter: 999999, "q": "a"})

        assert hidden.status_code == missing.status_code == 400
        # The page names the parameter (Django's own answer was a bare "Bad Request (400)"), the
        # same words for both, and links to the list without it.
        errors = [
            response.content.decode().split('id="filter-errors"')[1].split("</ul>")[0] for response in (hidden, missing)
        ]
        assert errors[0] == errors[1]
        assert f"<strong>{parameter}</strong>: This list offers no such filter." in errors[0]
        assert 'href="/admin/incidents/' in hidden.content.decode() and "?q=a" in hidden.content.decode()

    @pytest.mark.parametrize(
        ("model_name", "query"),
        [
            ("source", {"kind__exact": "ngo_report"}),
            ("source", {"published_on__year": "2023"}),
            ("incident", {"review_state__exact": "published", "country": "CN", "date_from": "2023-01-01"}),
            ("incident", {"type": "forced-repatriation"}),
            ("place", {"country__exact": "CN"}),
            ("response", {"kind__exact": "statement", "date__year": "2023", "date__month": "9"}),
            # Its sidebar's "Undone" filter (EmptyFieldListFilter) was refused with a bare 400.
            ("incidentmerge", {"undone_at__isempty": "1"}),
            ("incidentmerge", {"undone_at__isempty": "0"}),
            # A queue's own choice beside its field's (WaitingFirstFilter), and a choice no row holds.
            ("incidentrevision", {"state__exact": "all"}),
            ("duplicatepair", {"decision__exact": "all"}),
            ("place", {"country__exact": "KP"}),
        ],
    )
    def test_the_filters_the_list_offers_still_work(self, client, reviewer, model_name, query):
        assert client.get(changelist(model_name), query).status_code == 200

    @pytest.mark.parametrize(
        ("model_name", "query"),
        [
            # PostgreSQL's text holds no NUL: a DataError.
            ("source", {"kind__exact": "\x00"}),
            ("incident", {"review_state__exact": "\x00"}),
            ("incidentrevision", {"state__exact": "\x00"}),
            # No date has that year: an OverflowError in Django's date hierarchy.
            ("source", {"published_on__year": "99999999999999999999"}),
            ("response", {"date__year": "2023", "date__month": "99999999999999999999"}),
            # Days that end past 9999-12-31: Django selects them up to the next year, month or day,
            # an OverflowError as well.
            ("source", {"published_on__year": "9999"}),
            ("source", {"published_on__year": "9999", "published_on__month": "12"}),
            ("response", {"date__year": "9999", "date__month": "12", "date__day": "31"}),
            # A `__year` lookup of a year no date has: a ValueError or an OverflowError when Django
            # computes that year's bounds, as it runs the query.
            ("incidentmerge", {"undone_at__year": "0"}),
            ("incidentmerge", {"undone_at__year": "10000"}),
            # Any lookup on the record's fields: a regular expression PostgreSQL cannot read.
            ("incidentrevision", {"state__regex": "("}),
            ("release", {"name__regex": "("}),
        ],
    )
    def test_a_value_no_filter_sends_answers_400_not_500(self, client, reviewer, model_name, query):
        assert client.get(changelist(model_name), query).status_code == 400

    @pytest.mark.parametrize(
        ("model_name", "query", "named"),
        [
            # A value the field cannot hold: Django redirected to a page blaming the database.
            ("incident", {"confidential__exact": "maybe", "review_state__exact": "draft"}, "confidential__exact"),
            ("source", {"confidential__exact": "maybe"}, "confidential__exact"),
            ("confidentialaccess", {"user__id__exact": "abc"}, "user__id__exact"),
            # A filter of the project's refusing its value in its own words: the link keeps the others.
            ("confidentialaccess", {"incident": "abc", "door__exact": "api"}, "incident"),
            # A value no choice holds, and an `__isnull` neither true nor false: Django listed
            # nothing, which read as "no incident is published".
            ("incident", {"review_state__exact": "publishd", "confidential__exact": "0"}, "review_state__exact"),
            ("source", {"kind__exact": "blog"}, "kind__exact"),
            ("place", {"country__exact": "ZZ"}, "country__exact"),
            ("incident", {"verification__isnull": "maybe"}, "verification__isnull"),
        ],
    )
    def test_a_value_a_filter_cannot_take_gets_a_400_naming_it(self, client, model_name, query, named):
        client.force_login(make_user(roles.REVIEWER, confidential=True, is_superuser=True))

        response = client.get(changelist(model_name), query)

        assert response.status_code == 400
        page = response.content.decode()
        errors = page.split('id="filter-errors"')[1].split("</ul>")[0]
        assert f"<strong>{named}</strong>: " in errors
        kept = {name: value for name, value in query.items() if name != named}
        assert f'href="{changelist(model_name)}?{urlencode(kept)}"' in page

    def test_a_choice_no_filter_offers_is_named_with_the_choices(self, client, reviewer):
        make_incident()

        response = client.get(changelist("incident"), {"review_state__exact": "publishd"})

        assert response.status_code == 400
        errors = response.content.decode().split('id="filter-errors"')[1].split("</ul>")[0]
        said = "“publishd” is not one of the choices: draft, in_review, published."
        assert f"<strong>review_state__exact</strong>: {said}" in errors

    def test_a_page_the_list_no_longer_reaches_gets_a_400_naming_it(self, client):
        client.force_login(make_user(roles.REVIEWER, confidential=True))
        Source.objects.bulk_create(Source(title=f"Report {number}") for number in range(101))  # two pages

        response = client.get(changelist("source"), {"p": "9", "confidential__exact": "0"})

        assert response.status_code == 400
        page = response.content.decode()
        assert "<strong>p</strong>: The list has no such page." in page.split('id="filter-errors"')[1]
        assert f'href="{changelist("source")}?confidential__exact=0"' in page

    # "²" is a digit to isdigit(), not to int(): a 500.
    @pytest.mark.parametrize("page", ["9", "abc", "1.5", "0", "-1", "²"])
    def test_a_page_a_list_of_one_page_has_not_gets_a_400_naming_it(self, client, reviewer, page):
        # Django's changelist reads a page it cannot parse as page 1, and shows a list of one page
        # whatever page is asked: `?p=9` answered 200 with page 1, as if it were page 9.
        make_source(title="Report")

        response = client.get(changelist("source"), {"p": page})

        assert response.status_code == 400
        assert "<strong>p</strong>: The list has no such page." in response.content.decode()
        assert client.get(changelist("source"), {"p": "1"}).status_code == 200

    @pytest.mark.parametrize("ordering", ["99", "1.x", "-", "0", "²"])
    def test_an_ordering_no_column_sorts_by_gets_a_400_naming_it(self, client, reviewer, ordering):
        # Django's changelist passes over an ordering it cannot read (no such column, not a number,
        # the checkbox column): the list came in its default order, 200, as if sorted as asked.
        make_incident()

        response = client.get(changelist("incident"), {"o": ordering})

        assert response.status_code == 400
        errors = response.content.decode().split('id="filter-errors"')[1].split("</ul>")[0]
        assert "<strong>o</strong>: No column sorts by" in errors

    def test_an_ordering_the_column_headings_send_is_read(self, client, reviewer):
        make_incident()
        page = client.get(changelist("incident")).content.decode()
        # With `?o=` (empty): the "remove from sorting" link of the only sorted column, the default order.
        orderings = set(re.findall(r'href="\?o=([-0-9.]*)"', page)) | {""}

        assert orderings
        for ordering in orderings:
            assert client.get(changelist("incident"), {"o": ordering}).status_code == 200, ordering

    @pytest.mark.parametrize(
        ("path", "query"),
        [
            ("/admin/accounts/apitoken/", {"name__regex": "("}),
            ("/admin/auth/user/", {"username__iregex": "("}),
            ("/admin/auth/group/", {"name__regex": "("}),
        ],
    )
    def test_no_list_takes_a_regular_expression(self, client, path, query):
        # These lists take any lookup on their fields (Django's rule, kept for their date filters):
        # a malformed regular expression reached PostgreSQL, a 500. No filter sends one.
        client.force_login(make_user(roles.REVIEWER, is_superuser=True))

        assert client.get(path, query).status_code == 400
        assert client.get(path).status_code == 200

    @pytest.mark.parametrize(
        ("path", "query"),
        [
            # A bound without its time zone, typed by hand: Django read it in UTC, with a warning.
            ("/admin/accounts/apitoken/", {"expires_at__gte": "2026-01-01"}),
            ("/admin/accounts/setuplink/", {"created_at__lt": "2026-01-01 00:00:00"}),
            ("/admin/axes/accessattempt/", {"attempt_time__gte": "yesterday"}),
        ],
    )
    def test_a_date_and_time_bound_no_filter_sends_answers_400(self, client, path, query):
        client.force_login(make_user(roles.REVIEWER, is_superuser=True))

        assert client.get(path, query).status_code == 400
        # The bounds the date filters' links send, each with its time zone.
        [name] = query
        assert client.get(path, {name: "2026-01-01 00:00:00+00:00"}).status_code == 200

    @pytest.mark.parametrize("query", [{"incident_ids": "1"}, {"claim_ids__contains": "[1]"}])
    def test_the_accesses_list_takes_only_its_filters(self, client, query):
        # A lookup on the record's array fields reached PostgreSQL as a malformed array: a 500.
        client.force_login(make_user(roles.REVIEWER, confidential=True))

        assert client.get(changelist("confidentialaccess"), query).status_code == 400
        assert client.get(changelist("confidentialaccess"), {"door__exact": "admin"}).status_code == 200

    @pytest.mark.parametrize(
        ("path", "action", "selected"),
        [
            ("/admin/incidents/incident/", "submit_for_review", "x"),
            ("/admin/incidents/incident/", "submit_for_review", "\x00"),
            ("/admin/incidents/incident/", "submit_for_review", "9" * 30),
            ("/admin/auth/user/", "make_setup_links", "x"),
            ("/admin/accounts/apitoken/", "revoke", "x"),
            ("/admin/axes/accessattempt/", "delete_selected", "x"),
        ],
    )
    def test_an_action_on_a_selection_that_is_no_id_changes_nothing_and_says_so(self, client, path, action, selected):
        # Django filtered the list by the posted values as they came: ValueError, a 500 on every list
        # with actions. Now the list again, with a message; a selection of ids still runs.
        client.force_login(make_user(roles.ANALYST, is_superuser=True))
        session = client.session
        session["accounts_confirmed_at"] = 2**40  # confirmed (accounts.confirmation), for the accounts' lists
        session.save()
        draft = make_incident(review_state="draft")

        for data in (
            {"action": action, "_selected_action": [selected]},
            {**{"action": action, "index": 0}, "_selected_action": [str(draft.pk), selected]},
        ):
            response = client.post(path, data, follow=True)

            assert response.status_code == 200
            assert response.redirect_chain[-1][0] == path
            shown = [str(message) for message in response.context["messages"]]
            assert any(message.startswith("The selection “") and "nothing was changed" in message for message in shown)
        draft.refresh_from_db()
        assert draft.review_state == "draft"
        submitted = client.post(
            "/admin/incidents/incident/",
            {"action": "submit_for_review", "index": 0, "_selected_action": [str(draft.pk)]},
        )
        assert submitted.status_code == 302
        draft.refresh_from_db()
        assert draft.review_state != "draft"


@pytest.fixture
def responses():
    organization = make_organization(name="UNHCR")
    public, secret = make_incident(title="Public"), make_incident(title="Secret", confidential=True)

    def respond(description, *incidents):
        response = Response.objects.create(
            organization=organization, kind="statement", date=date(2023, 9, 1), description=description
        )
        response.incidents.set(incidents)
        return response

    return {"both": respond("About both", public, secret), "secret": respond("About the secret one", secret)}


class TestListFilters:
    @pytest.mark.parametrize(
        ("model_name", "held", "offered"), [("place", "CN", "China"), ("organization", "KR", "South Korea")]
    )
    def test_the_country_filter_offers_the_countries_the_list_holds(self, client, reviewer, model_name, held, offered):
        # All 249 countries were offered beside a dozen rows: 6,000 pixels of links to scroll past.
        make_place(name="Jilin", country="CN")
        make_organization(name="Ministry of Unification", country="KR")

        page = client.get(changelist(model_name)).content.decode()

        assert page.count("country__exact=") == 1
        assert f'<a href="?country__exact={held}">{offered}</a>' in page
        assert client.get(changelist(model_name), {"country__exact": held}).status_code == 200

    @pytest.mark.parametrize("model_name", ["incident", "source"])
    def test_confidential_is_a_filter_and_column_for_those_who_may_see_it(self, client, model_name):
        make_source(title="Informant", confidential=True)
        make_incident(title="Secret", confidential=True)
        client.force_login(make_user(roles.REVIEWER, confidential=True))
        insider = client.get(changelist(model_name), {"confidential__exact": "1"})
        assert insider.status_code == 200
        assert len(insider.context["cl"].result_list) == 1
        assert "confidential__exact=" in insider.content.decode()

        # To a reviewer without Confidential access every record listed is not confidential: a
        # filter whose "Yes" always listed nothing, and a column of "no", read as records held back.
        client.force_login(make_user(roles.REVIEWER))
        page = client.get(changelist(model_name))
        assert "confidential__exact=" not in page.content.decode()
        assert "confidential" not in page.context["cl"].list_display
        refused = client.get(changelist(model_name), {"confidential__exact": "1"})
        assert refused.status_code == 400
        assert "<strong>confidential__exact</strong>: This list offers no such filter." in refused.content.decode()


class TestResponsesFollowTheirIncidents:
    def test_a_response_to_a_hidden_incident_is_not_listed_nor_opened(self, client, reviewer, responses):
        listed = client.get(changelist("response")).context["cl"].result_list
        assert list(listed) == [responses["both"]]
        secret_page = client.get(reverse("admin:incidents_response_change", args=[responses["secret"].pk]))
        assert secret_page.status_code == 302  # the admin's "does not exist" redirect

    def test_a_reviewer_cannot_delete_a_response_linked_to_a_hidden_incident(self, client, reviewer, responses):
        url = reverse("admin:incidents_response_delete", args=[responses["both"].pk])

        page = client.get(url)
        client.post(url, {"post": "yes"})

        # Refused like any deletion without Confidential access, naming nothing.
        assert page.status_code == 403
        assert Response.objects.filter(pk=responses["both"].pk).exists()
        assert responses["both"].incidents.count() == 2

    def test_with_confidential_access_the_reviewer_may(self, client, responses):
        client.force_login(make_user(roles.REVIEWER, confidential=True))

        client.post(reverse("admin:incidents_response_delete", args=[responses["both"].pk]), {"post": "yes"})

        assert not Response.objects.filter(pk=responses["both"].pk).exists()


class TestActionsOffered:
    @pytest.mark.parametrize(
        ("role", "offered"),
        [
            (roles.ANALYST, {"submit_for_review"}),
            (
                roles.REVIEWER,
                {"submit_for_review", "publish", "return_to_draft"}
                | {f"mark_{verification}" for verification in Verification.values},
            ),
        ],
    )
    def test_each_role_sees_only_the_actions_it_may_take(self, client, role, offered):
        make_incident()
        client.force_login(make_user(role))

        choices = client.get(changelist("incident")).context["action_form"].fields["action"].choices

        assert {name for name, _ in choices if name} - {"delete_selected", "export_selected_as_csv"} == offered


class TestSiteChrome:
    def test_pages_carry_the_product_name_and_styled_breadcrumbs(self, client, reviewer):
        incident = make_incident()
        pages = {
            "history": client.get(history_url(incident)),
            "import": client.get(reverse("admin:incidents_incident_import_csv")),
            "bad filter": client.get(changelist("incident"), {"date_from": "soon"}),
        }
        for name, page in pages.items():
            html = page.content.decode()
            assert '<ol class="breadcrumbs">' in html, name
            assert "Incident Tracker" in html and "Django administration" not in html, name


def test_claims_keep_their_history_when_unchanged_saves_are_left_out(client, reviewer):
    incident = make_incident()
    claim = make_claim(incident=incident, people_count=80)
    Claim.objects.filter(pk=claim.pk).update(people_count=90)

    page = client.get(history_url(incident)).content.decode()

    assert "<strong>People count</strong>: 80 → 90" in page


@pytest.mark.parametrize(
    "path",
    [
        "incident/?review_state__id__exact=1",
        "incident/?verification__id__exact=1",
        "source/?kind__id__exact=1",
        "place/?sensitive__id__exact=1",
        "response/?kind__id__exact=1",
    ],
)
def test_a_related_records_filter_on_a_field_that_links_to_none_is_not_offered(client, path):
    # Offered for every filtered field, as a related record's filter writes it, it met Django's
    # NotRelationField when checked: a 500 for any member of staff.
    make_incident()
    client.force_login(make_user(roles.ANALYST))
    refused = client.get(f"/admin/incidents/{path}")
    assert refused.status_code == 400
    assert "This list offers no such filter." in refused.content.decode()


def test_a_source_page_shows_internal_notes_only_to_whom_the_api_shows_them(client):
    # An account of staff that may change sources but not view incidents reads `"notes": null` in
    # the API: its admin page showed the notes in full, and notes typed there were dropped unsaid.
    notes = "Called the editor: the author is our informant."
    source = make_source(title="Article", notes=notes)
    editor = make_user(None, is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_source", "change_source"]))
    client.force_login(editor)
    url = reverse("admin:incidents_source_change", args=[source.pk])

    page = client.get(url).content.decode()
    saved = saved_unchanged(client, url, "source_form", title="Article, edited")

    assert notes not in page and 'name="notes"' not in page
    assert saved.status_code == 302
    source.refresh_from_db()
    assert (source.title, source.notes) == ("Article, edited", notes)
    client.force_login(make_user(roles.ANALYST))
    assert notes in client.get(url).content.decode()
