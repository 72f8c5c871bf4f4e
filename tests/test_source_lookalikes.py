"""A source entered twice: every door that adds one (the admin's Sources page and the incident
form's "+" pop-up, the API, the CSV import with --create-missing) names a source already recorded
that the new one looks like, and records it only once its writer confirms it is another. A source
the writer may not see is never named, nor does it stop the write."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, Source
from tests.api_support import API, client_for
from tests.factories import make_organization, make_source, make_user
from tests.test_write_conflicts import answered_while_held

ADD = reverse("admin:incidents_source_add")
ARTICLE = "https://www.dailynk.com/english/forced-repatriation-of-500/"


def source_form(**fields) -> dict:
    """The admin's form for adding a source, filled as an analyst leaves it, with `fields`."""
    form = dict.fromkeys(
        ["url", "archive_url", "publisher", "author", "published_on", "language", "cites", "notes"], ""
    )
    return {"title": "Forced repatriation of 500", "kind": "news_article", "expected_version": "", **form, **fields}


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


@pytest.fixture
def confidential_analyst():
    return make_user(roles.ANALYST, confidential=True)


class TestTheAdmin:
    def test_a_source_at_the_same_address_is_named_and_nothing_saved_until_confirmed(self, client, analyst):
        recorded = make_source(title="China returns 500 North Koreans", url=ARTICLE)
        # Another scheme and host case, no trailing slash, a newsletter's utm_ parameters.
        form = source_form(url="http://WWW.DailyNK.com/english/forced-repatriation-of-500?utm_source=newsletter")
        client.force_login(analyst)

        refused = client.post(ADD, form)

        assert refused.status_code == 200
        page_form = refused.context["adminform"].form
        assert page_form.errors["url"] == [
            f"This looks like source #{recorded.pk} “China returns 500 North Koreans” (the same address): "
            "use it, or confirm that this is another source."
        ]
        assert 'name="another_source_confirmed"' in refused.content.decode()
        assert Source.objects.count() == 1

        saved = client.post(ADD, {**form, "another_source_confirmed": "on"})

        assert saved.status_code == 302
        assert Source.objects.count() == 2

    def test_the_box_is_not_offered_before_a_lookalike_is_found(self, client, analyst):
        page = client.force_login(analyst) or client.get(ADD)

        assert 'name="another_source_confirmed"' not in page.content.decode()

    def test_the_incident_forms_pop_up_names_a_source_of_the_same_title_and_publisher(self, client, analyst):
        daily_nk = make_organization(name="Daily NK")
        recorded = make_source(title="North Korea's forced returns", publisher=daily_nk)
        form = source_form(title="  north Korea’s   forced returns ", publisher=str(daily_nk.pk), _popup="1")
        client.force_login(analyst)

        refused = client.post(f"{ADD}?_popup=1", form)

        assert refused.context["adminform"].form.errors["title"] == [
            f"This looks like source #{recorded.pk} “North Korea's forced returns” (the same title and "
            "publisher): use it, or confirm that this is another source."
        ]
        assert Source.objects.count() == 1

    def test_the_same_title_from_another_publisher_is_another_source(self, client, analyst):
        make_source(title="Annual report 2023", publisher=make_organization(name="HRW"))
        form = source_form(title="Annual report 2023", publisher=str(make_organization(name="Amnesty").pk))

        answer = client.force_login(analyst) or client.post(ADD, form)

        assert answer.status_code == 302
        assert Source.objects.filter(title="Annual report 2023").count() == 2


class TestAddressesWithAPortOutOfRange:
    """Django's URLValidator takes any five digits of port (`:99999`), which Python's `urlsplit`
    refuses to read: adding such a source, or any source beside one stored so, compared their
    addresses and answered 500, in the admin and the API (found by an attack review)."""

    OUT_OF_RANGE = "http://example.org:99999/report"

    @pytest.mark.parametrize("field", ["url", "archive_url"])
    def test_the_admin_refuses_it_naming_the_field(self, client, analyst, field):
        client.force_login(analyst)

        refused = client.post(ADD, source_form(**{field: self.OUT_OF_RANGE}))

        assert refused.status_code == 200
        assert "port" in refused.context["adminform"].form.errors[field][0]
        assert not Source.objects.exists()

    def test_the_api_refuses_it_naming_the_field_and_an_organizations_website_alike(self, analyst):
        client = client_for(analyst)

        source = client.post(f"{API}/sources/", {"title": "A report", "url": self.OUT_OF_RANGE}, format="json")
        website = client.post(f"{API}/organizations/", {"name": "NGO", "website": self.OUT_OF_RANGE}, format="json")

        assert (source.status_code, list(source.json())) == (400, ["url"])
        assert (website.status_code, list(website.json())) == (400, ["website"])

    def test_one_stored_before_the_check_breaks_no_one_elses_new_source(self, client, analyst):
        stored = make_source(title="Stored before", url="https://example.org/old")
        Source.objects.filter(pk=stored.pk).update(url=self.OUT_OF_RANGE)
        client.force_login(analyst)

        # Its host's other addresses are compared with it.
        saved = client.post(ADD, source_form(title="Returns at Sinuiju", url="https://example.org/new"))

        assert saved.status_code == 302
        assert Source.objects.count() == 2


class TestConfidentialSources:
    def test_a_confidential_sources_address_is_not_named_to_an_analyst_who_may_not_see_it(self, client, analyst):
        make_source(title="Informant's account", url=ARTICLE, confidential=True)
        client.force_login(analyst)

        admin_answer = client.post(ADD, source_form(url=ARTICLE))
        # The public copy each door records is another lookalike, which the other door would name.
        Source.objects.filter(confidential=False).delete()
        api_answer = client_for(analyst).post(
            f"{API}/sources/", {"title": "Another title", "kind": "news_article", "url": ARTICLE}, format="json"
        )

        # Recorded as any new source is: a warning would tell them the hidden source exists.
        assert admin_answer.status_code == 302
        assert api_answer.status_code == 201, api_answer.content
        assert Source.objects.filter(url=ARTICLE).count() == 2

    def test_it_is_named_to_an_analyst_with_confidential_access(self, client, confidential_analyst):
        secret = make_source(title="Informant's account", url=ARTICLE, confidential=True)
        client.force_login(confidential_analyst)

        admin_answer = client.post(ADD, source_form(url=ARTICLE))
        api_answer = client_for(confidential_analyst).post(
            f"{API}/sources/", {"title": "Another title", "kind": "news_article", "url": ARTICLE}, format="json"
        )

        assert f"source #{secret.pk} “Informant's account”" in admin_answer.context["adminform"].form.errors["url"][0]
        assert api_answer.status_code == 409
        assert [source["id"] for source in api_answer.json()["sources"]] == [secret.pk]
        assert Source.objects.count() == 1


class TestTheAPI:
    def test_a_wayback_copy_of_a_recorded_article_answers_409_naming_it_until_confirmed(self, analyst):
        recorded = make_source(title="China returns 500 North Koreans", url=ARTICLE)
        body = {
            "title": "Forced repatriation of 500",
            "kind": "news_article",
            "url": f"https://web.archive.org/web/20231010000000/{ARTICLE}",
        }
        client = client_for(analyst)

        refused = client.post(f"{API}/sources/", body, format="json")

        assert refused.status_code == 409
        assert refused.json()["code"] == "looks_like_another_source"
        assert refused.json()["sources"] == [
            {"id": recorded.pk, "title": "China returns 500 North Koreans", "field": "url"}
        ]
        assert '"another_source_confirmed": true' in refused.json()["detail"]
        assert Source.objects.count() == 1

        created = client.post(f"{API}/sources/", {**body, "another_source_confirmed": True}, format="json")

        assert created.status_code == 201, created.content
        assert "another_source_confirmed" not in created.json()
        assert Source.objects.count() == 2

    def test_editing_a_source_is_not_asked_to_confirm(self, analyst):
        make_source(title="Daily NK report", url=ARTICLE)
        copy = make_source(title="Daily NK report (copy)")

        answer = client_for(analyst).patch(
            f"{API}/sources/{copy.pk}/", {"url": ARTICLE, "version": copy.version}, format="json"
        )

        assert answer.status_code == 200, answer.content


class TestTheImport:
    HEADER = "title,type,date_start,date_end,sources\n"

    def run(self, user, tmp_path, content: str):
        path = tmp_path / "import.csv"
        path.write_text(content)
        out = io.StringIO()
        call_command(
            "import_incidents", str(path), f"--user={user.username}", "--create-missing", stdout=out, stderr=out
        )
        return out.getvalue()

    def test_create_missing_does_not_make_a_second_copy_of_a_title_with_a_curly_apostrophe(self, analyst, tmp_path):
        recorded = make_source(title="North Korea's forced returns")
        content = f"{self.HEADER}A,forced-repatriation,2023-01-01,2023-01-01,North Korea’s forced returns\n"

        with pytest.raises(CommandError):
            self.run(analyst, tmp_path, content)

        assert Source.objects.count() == 1 and not Claim.objects.exists()
        fixed = content.replace("North Korea’s forced returns", f'"North Korea\'s forced returns [#{recorded.pk}]"')
        assert "1 incident was created" in self.run(analyst, tmp_path, fixed)
        assert Claim.objects.get().source == recorded

    def test_the_refusal_names_the_source_to_cite(self, analyst, tmp_path):
        recorded = make_source(title="North Korea's forced returns")
        path = tmp_path / "import.csv"
        path.write_text(f"{self.HEADER}A,forced-repatriation,2023-01-01,2023-01-01,North Korea’s forced returns\n")
        err = io.StringIO()

        with pytest.raises(CommandError):
            call_command("import_incidents", str(path), f"--user={analyst.username}", "--create-missing", stderr=err)

        assert err.getvalue().splitlines() == [
            f"{path}: line 2, column sources: No source is titled 'North Korea’s forced returns', but it looks "
            f"like North Korea's forced returns [#{recorded.pk}]: write that to cite it, or add the new source "
            "in the admin first (it asks you to confirm that it is another)."
        ]

    def test_a_confidential_source_of_that_title_is_not_named_to_an_analyst_who_may_not_see_it(self, analyst, tmp_path):
        make_source(title="North Korea's forced returns", confidential=True)
        content = f"{self.HEADER}A,forced-repatriation,2023-01-01,2023-01-01,North Korea’s forced returns\n"

        output = self.run(analyst, tmp_path, content)

        assert "1 source was created (North Korea’s forced returns)" in output

    def test_create_missing_makes_one_source_of_two_spellings_of_a_new_title_in_one_file(self, analyst, tmp_path):
        content = (
            f"{self.HEADER}A,forced-repatriation,2023-01-01,2023-01-01,North Korea’s forced returns\n"
            "B,forced-repatriation,2023-02-01,2023-02-01,North Korea's  forced returns\n"
        )

        output = self.run(analyst, tmp_path, content)

        assert "1 source was created (North Korea’s forced returns)" in output
        assert Source.objects.count() == 1 and Claim.objects.filter(source=Source.objects.get()).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_analysts_adding_the_same_source_at_once_record_it_once():
    # A new source at the address of one its writer may see is refused naming it (409,
    # `looks_like_another_source`) until the writer confirms it is another. Two analysts entering
    # the same article at the same moment were each checked before the other's was committed, and
    # both were recorded: the duplicate the rule exists to prevent, with claims split between them.
    publisher = make_organization(name="Daily NK")
    clients = [client_for(make_user(roles.ANALYST)) for _ in range(2)]
    body = {
        "title": "China returns 500 North Koreans",
        "kind": "news_article",
        "url": "https://www.dailynk.com/english/china-returns-500/",
        "publisher": publisher.pk,
    }

    # Another write holds the publisher's row a moment, so that both new sources, checked and
    # written, wait for it (the check of their link to it, at commit): it only makes certain the
    # overlap that any two requests a few milliseconds apart have.
    answers = answered_while_held(
        "SELECT FROM incidents_organization WHERE id = %s FOR UPDATE",
        [publisher.pk],
        *(lambda client=client: client.post(f"{API}/sources/", body, format="json") for client in clients),
    )

    statuses = sorted(getattr(answer, "status_code", answer) for answer in answers)
    assert statuses == [201, 409], [getattr(answer, "content", answer) for answer in answers]
    assert Source.objects.filter(url=body["url"]).count() == 1
