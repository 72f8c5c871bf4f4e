"""Time zones and "today": the server keeps UTC; its users write from Seoul (UTC+9) and from partners'
zones (UTC-5). A time a page shows says its zone, and a date that is today for its writer, wherever
they are, is not refused as the future, while one that is the future everywhere is."""

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import sync_playwright

from accounts.services import token_create
from incidents import roles
from incidents.models import ConfidentialAccess, Incident, Response, Source
from tests.api_support import API, client_for
from tests.browser_support import launch_chromium
from tests.factories import make_incident, make_organization, make_source, make_user
from tests.test_admin import ADD, incident_post, logged_in
from tests.test_api_write import new_incident_body
from tests.test_browser import log_in
from tests.test_import import imported_or_refused

# 08:00 on 8 December in Seoul: the server's UTC is still 7 December.
SEOUL_MORNING = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


class TestTimesShownToStaffSayTheirZone:
    def test_the_incident_list_and_page_say_their_change_time_is_utc(self, client, analyst):
        # An analyst in Seoul read "Oct. 20, 2023, 9 a.m." as 9 in the morning in Seoul: it was 18:00 there.
        incident = make_incident(title="Repatriated from Tumen")
        logged_in(client, analyst)

        listing = client.get(reverse("admin:incidents_incident_changelist")).content.decode()
        page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content.decode()

        assert re.search(r'<td class="field-last_changed_at">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>', listing)
        assert re.search(r'<div class="readonly">\d{4}-\d\d-\d\d \d\d:\d\d UTC</div>', page)

    def test_a_confidential_read_says_its_time_is_utc_in_the_list_and_on_its_page(self, client, keeper):
        incident = make_incident(confidential=True)
        logged_in(client, keeper).get(reverse("admin:incidents_incident_change", args=[incident.pk]))
        read = ConfidentialAccess.objects.get(user=keeper)
        at = f"{read.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"

        listing = client.get(reverse("admin:incidents_confidentialaccess_changelist")).content.decode()
        page = client.get(reverse("admin:incidents_confidentialaccess_change", args=[read.pk])).content.decode()

        assert at in listing
        assert f"{keeper.username} via admin at {at}" in page

    def test_the_security_page_says_when_a_token_was_last_used_in_utc(self, analyst):
        _, key = token_create(user=analyst, name="nightly sync", second_factor=True)
        with time_machine.travel(SEOUL_MORNING, tick=False):
            Client().get(f"{API}/incidents/", HTTP_AUTHORIZATION=f"Token {key}")
        client = Client()
        client.force_login(analyst)

        page = client.get("/accounts/").content.decode()

        assert "7 Dec 2026 23:00 UTC" in page


class TestADateThatIsTodaySomewhereIsNotTheFuture:
    """The doors cannot know their writer's zone (a script's, a spreadsheet's): a day that has begun
    anywhere on Earth (UTC+14 is the latest, Kiribati's Line Islands) is accepted; a day that has
    begun nowhere is a mistyped year ("2062" for "2026"), refused naming the field."""

    def test_an_analyst_in_seoul_records_this_mornings_incident_through_the_api(self, analyst):
        with time_machine.travel(SEOUL_MORNING, tick=False):
            seoul_today = (timezone.now() + timedelta(hours=9)).date().isoformat()
            answer = client_for(analyst).post(
                f"{API}/incidents/",
                new_incident_body(date_start=seoul_today, date_end=seoul_today),
                format="json",
            )

        assert answer.status_code == 201, answer.content
        assert answer.json()["date_start"] == "2026-12-08"

    @pytest.mark.parametrize("day", ["2062-12-08", "2026-12-09"])
    def test_a_day_that_has_begun_nowhere_is_refused_naming_the_start(self, analyst, day):
        # At 23:00 UTC on 7 December it is 13:00 on 8 December in Kiribati, and 9 December nowhere.
        with time_machine.travel(SEOUL_MORNING, tick=False):
            answer = client_for(analyst).post(
                f"{API}/incidents/", new_incident_body(date_start=day, date_end=day), format="json"
            )

        assert answer.status_code == 400
        assert f"The start date ({day}) has not begun anywhere yet" in answer.json()["date_start"][0]
        assert not Incident.objects.exists()

    def test_the_admin_refuses_a_mistyped_year_and_keeps_this_month(self, client, analyst):
        with time_machine.travel(SEOUL_MORNING, tick=False):
            logged_in(client, analyst)
            refused = client.post(ADD, incident_post(date_start="2062-12-07", date_end="2062-12-07"))
            # "December 2026", a Month that ends after today, is a fact about days already begun.
            kept = client.post(
                ADD, incident_post(date_start="2026-12-01", date_end="2026-12-31", date_precision="month")
            )

        assert "has not begun anywhere yet" in str(refused.context["adminform"].form.errors["date_start"])
        assert kept.status_code == 302
        assert list(Incident.objects.values_list("date_start", flat=True)) == [date(2026, 12, 1)]

    def test_a_claim_since_a_day_that_has_begun_nowhere_is_refused(self, analyst):
        source = make_source()
        with time_machine.travel(SEOUL_MORNING, tick=False):
            body = new_incident_body(
                claims=[{"source": source.pk, "date_start": "2062-03-01", "date_precision": "month"}]
            )
            answer = client_for(analyst).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        assert "has not begun anywhere yet" in str(answer.json())

    def test_an_import_refuses_a_row_whose_start_has_begun_nowhere_at_its_line_and_column(self, analyst, tmp_path):
        rows = "title,type,date_start,date_end\nReturned,forced-repatriation,2062-12-07,2062-12-07\n"
        with time_machine.travel(SEOUL_MORNING, tick=False):
            output = imported_or_refused(analyst, tmp_path / "import.csv", rows)

        assert "line 2" in output and "date_start" in output and "has not begun anywhere yet" in output
        assert not Incident.objects.exists()

    def test_a_source_published_on_a_day_begun_nowhere_is_refused_naming_the_field(self, analyst):
        # A source dated decades ahead headed the sources' list (newest first) and every autocomplete.
        with time_machine.travel(SEOUL_MORNING, tick=False):
            refused = client_for(analyst).post(
                f"{API}/sources/", {"title": "Daily NK", "published_on": "2062-12-08"}, format="json"
            )
            kept = client_for(analyst).post(
                f"{API}/sources/", {"title": "Yonhap", "published_on": "2026-12-08"}, format="json"
            )

        assert refused.status_code == 400
        assert "(2062-12-08) has not begun anywhere yet" in refused.json()["published_on"][0]
        assert kept.status_code == 201, kept.content
        assert list(Source.objects.values_list("title", flat=True)) == ["Yonhap"]

    def test_a_response_on_a_day_begun_nowhere_is_refused_naming_the_field(self):
        reviewer = make_user(roles.REVIEWER)
        body = {"organization": make_organization().pk, "kind": "statement", "date": "2062-10-13"}
        with time_machine.travel(SEOUL_MORNING, tick=False):
            refused = client_for(reviewer).post(f"{API}/responses/", body, format="json")

        assert refused.status_code == 400
        assert "(2062-10-13) has not begun anywhere yet" in refused.json()["date"][0]
        assert not Response.objects.exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_date_pickers_today_is_the_analysts_own_day_in_seoul(live_server, monkeypatch):
    # At 08:00 on 8 December in Seoul, Django's "Today" gave the server's day, 7 December, and every
    # date field said "Note: Enter times in the UTC timezone. (You are 9 hours ahead.)": a date has no zone.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_user(roles.ANALYST, username="jiwoo")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(timezone_id="Asia/Seoul").new_page()
        page.set_default_timeout(15_000)
        page.clock.set_fixed_time(SEOUL_MORNING)
        log_in(page, live_server, "jiwoo")
        page.goto(f"{live_server.url}{ADD}")
        page.locator("#id_date_start + .datetimeshortcuts").get_by_role("button", name="Today").click()
        chosen, warnings = page.input_value("#id_date_start"), page.locator(".timezonewarning").count()
        browser.close()
    connections.close_all()

    assert chosen == "2026-12-08"
    assert warnings == 0
