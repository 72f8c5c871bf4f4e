"""A real browser (Debian's headless Chromium driven by Playwright) through the analysts' admin.

Every page any of these tests opens must keep to the Content-Security-Policy: a violation (an
inline script or style, a resource from elsewhere) fails the test.

An analyst enters the seed article's 29 August 2023 repatriation with its place and claims on one
page — type, place and one source picked through the autocomplete, the other source created from
the autocomplete's "+" — and saves once; a reviewer then publishes it. `make test` installs
Chromium first when it is missing (`make browser`).
"""

from datetime import date

import pytest
from django.db import connections
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page, expect, sync_playwright

from accounts.services import setup_link_create
from accounts.views import setup_link_path
from incidents import roles
from incidents.models import Incident, Place, Source
from tests.api_support import client_for, incident_url
from tests.browser_support import launch_chromium
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_accounts import app_code, enrol

PASSWORD = "correct horse battery staple"


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django refuses database calls from a
    # thread with a running loop unless told that this test's synchronous use is safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        violations = watch_for_csp_violations(page)
        yield page
        browser.close()
        # While Playwright's loop runs, Django keeps this test's database connection apart from the
        # thread's usual one; close it here, or it outlives the test and blocks dropping the test database.
        connections.close_all()
    assert not violations, f"Content-Security-Policy violations: {violations}"


def watch_for_csp_violations(page: Page) -> list[str]:
    """Every Content-Security-Policy violation the pages report, as the browser reports them: the
    `securitypolicyviolation` event (script added before any page script runs, which CSP does not
    govern) and Chromium's console message."""
    violations = []
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', event => console.error("
        "`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI} on ${document.location}`))"
    )

    def record(message):
        if message.type == "error" and ("CSP violation" in message.text or "Content Security Policy" in message.text):
            violations.append(message.text)

    page.on("console", record)
    return violations


def log_in(page: Page, live_server, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def choose_in_autocomplete(page: Page, select_id: str, typed: str, option: str) -> None:
    """Open the select2 autocomplete that stands for <select id=select_id>, type, pick the option."""
    page.click(f"#{select_id} + .select2 .select2-selection")
    page.locator(".select2-container--open .select2-search__field").fill(typed)
    page.locator(".select2-results__option", has_text=option).click()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_analyst_enters_the_29_august_incident_and_a_reviewer_publishes_it(browser_page, live_server):
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_user(roles.REVIEWER, username="reviewer")
    make_place(name="Dandong", country="CN")
    make_source(title="Human Rights Watch statement", kind="ngo_report")

    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    page.fill("#id_title", "Deportation of 80 North Koreans from China")
    choose_in_autocomplete(page, "id_incident_type", "Forced", "Forced repatriation")
    page.fill("#id_date_start", "2023-08-29")
    page.fill("#id_date_end", "2023-08-29")
    page.select_option("#id_date_precision", "day")
    page.fill("#id_people_count", "80")
    page.select_option("#id_count_qualifier", "exact")
    choose_in_autocomplete(page, "id_place_list", "Dand", "Dandong")
    # Human Rights Watch's statement is already a source: pick it through the autocomplete.
    choose_in_autocomplete(page, "id_claims-0-source", "Human Rights", "Human Rights Watch statement")
    page.fill("#id_claims-0-people_count", "80")
    page.select_option("#id_claims-0-count_qualifier", "exact")
    page.fill("#id_claims-0-excerpt", "China deported 80 North Koreans on 29 August")
    # The article relaying it is not yet a source: create it from the "+" beside the autocomplete.
    page.click("#claims-group .add-row a")
    with page.expect_popup() as popup_opening:
        page.click("#add_id_claims-1-source")
    popup = popup_opening.value
    # Its scripts too, as a person waits for the page before typing.
    popup.wait_for_load_state()
    popup.fill("#id_title", "China deported 80 North Koreans, says HRW")
    popup.select_option("#id_kind", "news_article")
    with popup.expect_event("close", timeout=30_000):
        popup.click("input[name=_save]")
    expect(page.locator("#id_claims-1-source + .select2")).to_contain_text("China deported 80 North Koreans, says HRW")
    page.fill("#id_claims-1-people_count", "80")
    page.select_option("#id_claims-1-count_qualifier", "exact")
    page.fill("#id_claims-1-excerpt", "China had deported 80 North Koreans on Aug. 29")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    incident = Incident.objects.get()
    assert (incident.date_label, incident.people_count, incident.review_state) == ("29 August 2023", 80, "draft")
    assert [place.name for place in incident.places.all()] == ["Dandong"]
    assert sorted(incident.claims.values_list("source__title", "people_count")) == [
        ("China deported 80 North Koreans, says HRW", 80),
        ("Human Rights Watch statement", 80),
    ]
    assert incident.created_by.username == "analyst"

    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incident/")
    row = page.locator("#result_list tbody tr", has_text=incident.public_id)
    expect(row).to_contain_text("29 August 2023")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "publish")
    page.click("button[name=index]")

    expect(page.locator(".messagelist")).to_contain_text(f"Published: {incident.public_id}.")
    expect(page.locator("#result_list tbody tr", has_text=incident.public_id)).to_contain_text("Published")
    incident.refresh_from_db()
    assert incident.review_state == "published" and incident.updated_by.username == "reviewer"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_enters_july_2021_from_the_start_date_alone_and_loses_nothing_typed(browser_page, live_server):
    # The seed article's "some 50 ... in July 2021", with two sources disagreeing and an informant
    # entered as a confidential source from the "+": an analyst who picks Month and types the first
    # day alone read "This field is required." under the end date, and had to guess the month's last.
    page = browser_page
    make_user(roles.ANALYST, username="analyst", confidential=True)
    make_place(name="China–North Korea border area", country="CN")
    make_source(title="US, S. Korea decry China's repatriation of North Koreans")
    make_source(title="RFA: South Korea and US envoy decry China's forced repatriation")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    page.fill("#id_title", "Forced repatriation of some 50 North Koreans from China")
    choose_in_autocomplete(page, "id_incident_type", "Forced", "Forced repatriation")
    page.select_option("#id_date_precision", "month")
    page.fill("#id_date_start", "2021-07-01")
    page.fill("#id_people_count", "50")
    page.select_option("#id_count_qualifier", "about")
    page.fill("#id_people_count_min", "40")
    page.fill("#id_people_count_max", "60")
    choose_in_autocomplete(page, "id_place_list", "border", "China–North Korea border area")
    choose_in_autocomplete(page, "id_claims-0-source", "decry China's repatriation", "US, S. Korea decry")
    page.fill("#id_claims-0-people_count", "50")
    page.select_option("#id_claims-0-count_qualifier", "about")
    page.click("#claims-group .add-row a")
    choose_in_autocomplete(page, "id_claims-1-source", "RFA", "RFA: South Korea")
    page.fill("#id_claims-1-people_count", "40")
    page.select_option("#id_claims-1-count_qualifier", "exact")
    page.click("#claims-group .add-row a")
    with page.expect_popup() as popup_opening:
        page.click("#add_id_claims-2-source")
    popup = popup_opening.value
    popup.wait_for_load_state()
    popup.fill("#id_title", "Interview with a broker in Yanji")
    popup.select_option("#id_kind", "testimony")
    popup.check("#id_confidential")
    with popup.expect_event("close", timeout=30_000):
        popup.click("input[name=_save]")
    page.fill("#id_claims-2-people_count", "60")
    page.select_option("#id_claims-2-count_qualifier", "at_least")
    page.check("#id_claims-2-confidential")
    page.click("input[name=_save]")

    expect(page.locator(".field-date_end .errorlist")).to_have_text(
        "Give the last day of the range too: 2021-07-31, the month's last day, for a Month (“July 2021”)."
    )
    expect(page.locator("#id_place_list + .select2")).to_contain_text("China–North Korea border area")
    expect(page.locator("#id_claims-2-source + .select2")).to_contain_text("Interview with a broker in Yanji")
    expect(page.locator("#id_claims-2-confidential")).to_be_checked()
    expect(page.locator("#id_people_count_max")).to_have_value("60")
    page.fill("#id_date_end", "2021-07-31")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    incident = Incident.objects.get()
    assert (incident.date_label, incident.people_count, incident.people_count_min, incident.people_count_max) == (
        "July 2021",
        50,
        40,
        60,
    )
    assert sorted(incident.claims.values_list("people_count", "count_qualifier", "confidential")) == [
        (40, "exact", False),
        (50, "about", False),
        (60, "at_least", True),
    ]
    assert incident.claims.get(confidential=True).source.confidential


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_date_precision_comes_before_the_dates_it_decides(browser_page, live_server):
    # "In July 2021": the precision decides what to type in the two dates, and an analyst met it
    # only after typing them.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")

    precision = page.locator("#id_date_precision").bounding_box()
    for date_field in ("#id_date_start", "#id_date_end"):
        assert precision["y"] + precision["height"] <= page.locator(date_field).bounding_box()["y"]
    expect(page.locator("#id_date_precision_helptext")).to_contain_text("Choose it before the dates below.")
    # Each source's claim too: its precision, then its dates, which read after it (below, or to its right).
    claim_precision = page.locator("#id_claims-0-date_precision").bounding_box()
    for date_field in ("#id_claims-0-date_start", "#id_claims-0-date_end"):
        box = page.locator(date_field).bounding_box()
        assert claim_precision["y"] + claim_precision["height"] <= box["y"] or (
            claim_precision["y"] == box["y"] and claim_precision["x"] + claim_precision["width"] <= box["x"]
        )
    expect(page.locator("#id_claims-0-date_precision_helptext")).to_contain_text("Choose it before the dates")


def test_an_analysts_edit_of_a_published_incident_waits_until_a_reviewer_accepts_it(browser_page, live_server):
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_user(roles.REVIEWER, username="reviewer")
    incident = make_incident(title="80 North Koreans repatriated", people_count=80)

    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    page.fill("#id_people_count", "85")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("your changes wait for a Reviewer")
    incident.refresh_from_db()
    assert (incident.people_count, incident.version) == (80, 1)
    assert client_for().get(incident_url(incident)).json()["people_count"] == 80

    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incidentrevision/?state__exact=pending")
    page.locator("#result_list tbody tr a", has_text="Revision").first.click()
    diff = page.locator("table.revision-diff")
    expect(diff).to_contain_text("People count")
    expect(diff.locator("del")).to_contain_text("80")
    expect(diff.locator("ins")).to_contain_text("85")
    page.fill("#id_note", "Matches the HRW statement")
    page.click("input[name=accept]")

    expect(page.locator(".messagelist")).to_contain_text(f"Accepted: {incident.public_id}")
    incident.refresh_from_db()
    assert (incident.people_count, incident.version, incident.updated_by.username) == (85, 2, "reviewer")
    assert client_for().get(incident_url(incident)).json()["people_count"] == 85


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_pending_revisions_page_shows_no_empty_band_on_a_laptop_screen(browser_page, live_server, tmp_path):
    # The comparison's module began beside the floated page form, so its heading's blue band ran
    # from the page's top down to its words: below the read-only fields, an empty blue strip.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_user(roles.REVIEWER, username="reviewer")
    incident = make_incident(title="80 North Koreans repatriated", people_count=80)
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    page.fill("#id_people_count", "85")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("your changes wait for a Reviewer")
    log_in(page, live_server, "reviewer")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/admin/incidents/incidentrevision/{incident.revisions.get().pk}/change/")

    page.screenshot(path=tmp_path / "revision.png", full_page=True)
    print(f"screenshot: {tmp_path / 'revision.png'}")
    fields = page.locator("#incidentrevision_form fieldset").bounding_box()
    comparison = page.locator("h2", has_text="What accepting would change").bounding_box()
    decide = page.locator("h2", has_text="Decide").bounding_box()
    assert comparison["y"] >= fields["y"] + fields["height"]
    assert comparison["height"] == pytest.approx(decide["height"], abs=2)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_the_api_docs_and_the_browsable_api_work_under_the_content_security_policy(browser_page, live_server):
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_place(name="Dandong", country="CN")
    # The browsable API, as the public sees it.
    page.goto(f"{live_server.url}/api/v1/incidents/")
    expect(page.locator(".response-info")).to_contain_text("results")
    log_in(page, live_server, "analyst")

    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    choose_in_autocomplete(page, "id_place_list", "Dand", "Dandong")
    page.goto(f"{live_server.url}/admin/incidents/incident/")
    expect(page.locator("#changelist")).to_be_visible()

    # Swagger UI builds the whole page from scripts: its title only appears if they all ran.
    page.goto(f"{live_server.url}/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Incident Tracker API")
    page.goto(f"{live_server.url}/accounts/")
    expect(page.locator("#tokens")).to_be_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_place_is_offered_and_chosen_by_its_whole_path(browser_page, live_server):
    # Django's 20em autocomplete cut a long path short, the place's own name lost.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    border = make_place(name="China–North Korea border area", parent=make_place(name="China", country="CN"))
    make_place(name="Tumen", parent=border)
    log_in(page, live_server, "analyst")

    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    choose_in_autocomplete(page, "id_place_list", "Tumen", "China > China–North Korea border area > Tumen")

    chosen = page.locator("#id_place_list + .select2 .select2-selection__choice")
    expect(chosen).to_contain_text("China > China–North Korea border area > Tumen")
    box = page.locator("#id_place_list + .select2").bounding_box()
    assert box["width"] > 500


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_place_made_from_the_incident_page_is_put_inside_its_province_by_its_path(browser_page, live_server):
    # A quick "Tumen" in the Places "+" pop-up became a top-level place in no country, counted in
    # no country in the statistics; the pop-up now asks where it is, first, by the parent's path.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_place(name="Jilin", kind="province", parent=make_place(name="China", kind="country", country="CN"))
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")

    with page.expect_popup() as popup_opening:
        page.click("#add_id_place_list")
    popup = popup_opening.value
    popup.wait_for_load_state()
    popup.fill("#id_name", "Tumen")
    popup.click("input[name=_save]")
    expect(popup.locator(".field-parent .errorlist")).to_contain_text("Say where it is")
    # Asked right below the name and kind, not past the alternate names and coordinates.
    assert popup.locator("#id_parent").bounding_box()["y"] < popup.locator("#id_alternate_names").bounding_box()["y"]
    popup.select_option("#id_kind", "city")
    choose_in_autocomplete(popup, "id_parent", "Jilin", "China > Jilin")
    with popup.expect_event("close", timeout=30_000):
        popup.click("input[name=_save]")

    expect(page.locator("#id_place_list + .select2")).to_contain_text("China > Jilin > Tumen")
    tumen = Place.objects.get(name="Tumen")
    assert (tumen.parent.name, tumen.country, tumen.kind) == ("Jilin", "CN", "city")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_enter_picks_the_place_named_as_typed(browser_page, live_server):
    # Typing "North Korea" and Enter picked "China > China-North Korea border area", the first in
    # name order: North Hamgyong was saved inside China.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_place(name="China–North Korea border area", parent=make_place(name="China", kind="country", country="CN"))
    make_place(name="North Korea", kind="country", country="KP")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/place/add/")

    page.fill("#id_name", "North Hamgyong")
    page.select_option("#id_kind", "province")
    page.click("#id_parent + .select2 .select2-selection")
    page.locator(".select2-container--open .select2-search__field").fill("North Korea")
    expect(page.locator(".select2-results__option--highlighted")).to_have_text("North Korea")
    page.keyboard.press("Enter")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    province = Place.objects.get(name="North Hamgyong")
    assert (province.parent.name, province.country) == ("North Korea", "KP")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_incidents_title_and_its_claims_sources_are_read_whole(browser_page, live_server):
    # Both were cut off at 20em: a Reviewer could not tell which source a claim was of.
    page = browser_page
    make_user(roles.REVIEWER, username="reviewer")
    source = make_source(title="HRW: China forcibly repatriated around 500 North Koreans")
    incident = make_incident(title="Forced repatriation of around 500 North Koreans from China")
    make_claim(incident=incident, source=source)
    log_in(page, live_server, "reviewer")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")

    for shown in [
        page.locator("#id_title"),
        page.locator("#id_claims-0-source + .select2 .select2-selection__rendered"),
    ]:
        assert shown.evaluate("element => element.scrollWidth <= element.clientWidth")
    expect(page.locator("#id_claims-0-source + .select2")).to_contain_text(source.title)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_incidents_list_shows_every_column_on_a_laptop_screen(browser_page, live_server):
    # Between the list of every model and the filters, the list hid its Verification and Review
    # state columns behind a scroll bar at 1280 pixels.
    page = browser_page
    make_user(roles.REVIEWER, username="reviewer")
    border = make_place(name="China–North Korea border area", country="CN")
    make_incident(title="Forced repatriation of about 500 North Koreans from China", places=[border])
    log_in(page, live_server, "reviewer")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/admin/incidents/incident/")

    results = page.locator("#changelist .results")
    assert results.evaluate("table => table.scrollWidth <= table.clientWidth")
    expect(page.locator("#result_list thead")).to_contain_text("Review state")


def current_code(username: str) -> str:
    """The code `username`'s authenticator app shows now, computed as the app does."""
    device = TOTPDevice.objects.get(user__username=username, confirmed=False)
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():0{device.digits}d}"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_sets_up_a_second_factor_then_signs_in_with_a_recovery_code(browser_page, live_server, settings):
    settings.REQUIRE_2FA = True
    page = browser_page
    analyst = make_user(roles.ANALYST, username="analyst")

    # An administrator's setup link, then the password, lead to setting up the app, not to the admin.
    _, key = setup_link_create(user=analyst)
    sent = []
    page.on("request", lambda request: sent.append(request.url))
    page.goto(f"{live_server.url}{setup_link_path(key)}")
    expect(page.locator("#id_username")).to_be_visible()
    # The page's script posted the key, which no address the browser asked for holds.
    assert f"{live_server.url}/accounts/two-factor/setup/link/" in sent and not [url for url in sent if key in url]
    log_in_with_password(page, live_server, "analyst")
    expect(page.locator("h1")).to_have_text("Set up your authenticator app")
    expect(page.locator("#qr-code svg")).to_be_visible()
    page.fill("#id_code", current_code("analyst"))
    page.click("#two-factor-setup-form input[type=submit]")
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    codes = page.locator("#recovery-codes code").all_inner_texts()
    page.click("text=I have kept them: continue")
    expect(page.locator("#user-tools")).to_contain_text("analyst")
    expect(page.locator("#content h1")).to_have_text("Records")

    # Next time, without the phone: a recovery code, once.
    page.click("#logout-form button")
    log_in_with_password(page, live_server, "analyst")
    expect(page.locator("h1")).to_have_text("Second step")
    page.fill("#id_code", codes[0])
    page.click("#two-factor-form input[type=submit]")
    expect(page.locator("#content h1")).to_have_text("Records")
    page.goto(f"{live_server.url}/accounts/")
    expect(page.locator("#recovery-codes-left")).to_have_text("9")

    # New codes on Sign-in security ask for a current code too: a session alone does not make them.
    page.fill("#recovery_codes_code", codes[1])
    page.click("#recovery-codes-form input[type=submit]")
    expect(page.locator("#recovery-codes code")).to_have_count(10)


def log_in_with_password(page: Page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_administrator_confirms_who_they_are_before_changing_their_own_account(browser_page, live_server, settings):
    settings.REQUIRE_2FA = True
    page = browser_page
    administrator = make_user(roles.REVIEWER, username="administrator", is_superuser=True)
    device, codes = enrol(administrator)
    log_in_with_password(page, live_server, "administrator")
    page.fill("#id_code", app_code(device, 1))
    page.click("#two-factor-form input[type=submit]")
    expect(page.locator("#content h1")).to_have_text("Records")

    # Their own page in the users' admin asks who they are first, then shows its form.
    page.goto(f"{live_server.url}/admin/auth/user/")
    page.click("#result_list a:text-is('administrator')")
    expect(page.locator("h1")).to_have_text("Confirm it is you")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_code", codes[0])
    page.click("#confirm-form input[type=submit]")
    page.fill("#id_email", "administrator@example.org")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    administrator.refresh_from_db()
    assert administrator.email == "administrator@example.org"

    # Their own password, even confirmed, is changed where the current one (and a code) is asked.
    page.goto(f"{live_server.url}/admin/auth/user/{administrator.pk}/password/")
    expect(page.locator("#id_old_password")).to_be_visible()
    expect(page.locator("#id_code")).to_be_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_form_opened_before_its_analyst_signed_in_again_elsewhere_is_still_saved(browser_page, live_server):
    # Signing in gives the browser a new CSRF token; the form opened before, in another tab, sent
    # the old one and got Django's 403, everything typed lost.
    make_user(roles.ANALYST, username="analyst")
    # Two tabs of one browser: the fixture's page has a context of its own, which opens no other.
    tabs = browser_page.context.browser.new_context()
    page, other_tab = tabs.new_page(), tabs.new_page()
    violations = [watch_for_csp_violations(page), watch_for_csp_violations(other_tab)]
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/source/add/")
    old_token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()

    log_in(other_tab, live_server, "analyst")

    page.fill("#id_title", "Testimony typed before signing in again")
    page.select_option("#id_kind", "testimony")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony typed before signing in again").exists()
    # Django signs in with a new token, masked differently on each page: the old one was not it.
    assert old_token != page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    assert violations == [[], []]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_review_button_asks_before_it_leaves_edits_typed_on_the_page(browser_page, live_server):
    # The buttons act on the incident as last saved: a title typed and not saved was left behind
    # without a word.
    page = browser_page
    make_user(roles.REVIEWER, username="reviewer")
    incident = make_incident(review_state="in_review", title="As submitted")
    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    asked = []

    def answer(dialog, accept: bool):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.fill("#id_title", "Typed, not saved")
    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    # Asked once the site has said the reviewer is still signed in (sent_while_signed_in.js).
    with page.expect_event("dialog"):
        page.click("form.review-actions button[value=publish]")

    assert asked == ["Your edits on this page are not saved. Review the incident as last saved, and leave them?"]
    expect(page.locator("#id_title")).to_have_value("Typed, not saved")
    incident.refresh_from_db()
    assert incident.review_state == "in_review"

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.click("form.review-actions button[value=publish]")

    expect(page.locator(".messagelist")).to_contain_text(f"Published: {incident.public_id}.")
    incident.refresh_from_db()
    assert (incident.review_state, incident.title, len(asked)) == ("published", "As submitted", 2)
    # Nothing typed, nothing asked.
    unedited = make_incident(review_state="in_review")
    page.goto(f"{live_server.url}/admin/incidents/incident/{unedited.pk}/change/")
    page.click("form.review-actions button[value=publish]")
    expect(page.locator(".messagelist")).to_contain_text(f"Published: {unedited.public_id}.")
    assert len(asked) == 2


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("edit", ["incident type", "place removed", "calendar's Today"])
def test_a_review_button_asks_before_it_leaves_an_edit_made_through_a_widget(browser_page, live_server, edit):
    # select2, Django's calendar and "+" pop-ups change a field without the native input or change
    # event the page listened for: such a correction was published away unasked.
    page = browser_page
    make_user(roles.REVIEWER, username="reviewer")
    china = make_place(name="China", kind="country", country="CN")
    border = make_place(name="China–North Korea border area", kind="region", parent=china)
    incident = make_incident(review_state="in_review", places=[china, border])
    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    if edit == "incident type":
        choose_in_autocomplete(page, "id_incident_type", "Deport", "Deportation")
    elif edit == "place removed":
        chip = page.locator("#id_place_list + .select2 .select2-selection__choice", has_text="border area")
        chip.locator(".select2-selection__choice__remove").click()
        page.keyboard.press("Escape")
        expect(page.locator("#id_place_list + .select2")).not_to_contain_text("border area")
    else:
        page.locator("#id_date_end ~ .datetimeshortcuts a", has_text="Today").click()
        expect(page.locator("#id_date_end")).not_to_have_value(incident.date_end.isoformat())
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))

    with page.expect_event("dialog"):
        page.click("form.review-actions button[value=publish]")

    expect(page.locator("#id_date_end")).to_be_visible()
    assert asked == ["Your edits on this page are not saved. Review the incident as last saved, and leave them?"]
    incident.refresh_from_db()
    assert incident.review_state == "in_review"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_korean_reader_reads_an_incidents_dates_in_korean_on_the_maps_popup(browser_page, live_server):
    # The popup showed the GeoJSON download's English date_label, "Around 3 October 2023".
    make_incident(
        title="투먼 강제북송",
        date_start=date(2023, 10, 3),
        date_end=date(2023, 10, 9),
        date_precision="day",
        places=[make_place(name="Tumen", latitude=42.97, longitude=129.84)],
    )
    page = browser_page
    page.goto(f"{live_server.url}/ko/map/")
    expect(page.locator("#map")).to_have_attribute("data-points", "1")
    page.locator("#map path.leaflet-interactive").click()
    expect(page.locator(".leaflet-popup-content")).to_have_text("투먼 강제북송2023년 10월 3일 – 2023년 10월 9일")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_sources_pop_up_names_a_source_already_recorded_and_saves_another_once_confirmed(browser_page, live_server):
    # An analyst pasting a headline with a curly apostrophe made a second copy of the article.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    recorded = make_source(title="China's forced repatriation of 500 North Koreans")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    with page.expect_popup() as popup_opening:
        page.click("#add_id_claims-0-source")
    popup = popup_opening.value
    popup.wait_for_load_state()
    popup.fill("#id_title", "China’s forced repatriation of 500 North Koreans")
    popup.click("input[name=_save]")

    expect(popup.locator(".field-title .errorlist")).to_have_text(
        f"This looks like source #{recorded.pk} “China's forced repatriation of 500 North Koreans” (the same "
        "title): use it, or confirm that this is another source."
    )
    assert Source.objects.count() == 1
    popup.check("#id_another_source_confirmed")
    with popup.expect_event("close", timeout=30_000):
        popup.click("input[name=_save]")

    expect(page.locator("#id_claims-0-source + .select2")).to_contain_text("China’s forced repatriation")
    assert Source.objects.count() == 2
