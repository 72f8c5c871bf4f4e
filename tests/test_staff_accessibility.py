"""The staff's own pages (sign-in steps, Sign-in security, the duplicates queue, merges, imports)
as a screen reader and a keyboard meet them: each field named and told of its error, each table's
columns named, the QR code readable in either theme.

A page is fetched with Django's test client, then read in Chromium (Playwright), which computes
what assistive technology is told: the accessible name and description of each element. axe-core
(`tests.browser_support.assert_axe_passes`) reads each of these pages as a signed-in person meets
them, styled and with their scripts run."""

import re
import struct
import zlib
from contextlib import ExitStack

import pytest
from django.test import Client
from playwright.sync_api import Page, expect, sync_playwright

from accounts.services import setup_link_create, token_create
from accounts.views import setup_link_path
from incidents import roles
from incidents.models import DuplicatePair, IncidentRevision
from tests.browser_support import assert_axe_passes, launch_chromium
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_accounts import enrol, open_setup_link, second_step, shown_on, sign_in

# The Chromium fixture of the admin's browser tests, which fails a test on any CSP violation.
from tests.test_browser import browser_page as browser_page
from tests.test_browser import current_code, log_in_with_password


@pytest.fixture
def read():
    """Chromium, reading a page the test client fetched: `read(response)` is that page. Started
    once the test has its data: while Playwright's loop runs, Django would write it through a
    connection of its own, outside the test's transaction, and refuses to without being told."""
    with ExitStack() as stack:

        def show(response) -> Page:
            assert response.status_code == 200, response.status_code
            page = launch_chromium(stack.enter_context(sync_playwright())).new_page()
            page.set_content(response.content.decode())
            return page

        yield show


def signed_in(role: str = roles.REVIEWER) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


def a_pair() -> DuplicatePair:
    tumen = make_place(name="Tumen")
    daily = make_source(title="Daily NK")
    survivor = make_incident(title="80 repatriated from Tumen", places=[tumen], people_count=80)
    merged = make_incident(title="Tumen repatriation", places=[tumen, make_place(name="Yanji")], people_count=90)
    make_claim(incident=survivor, source=daily, people_count=80)
    make_claim(incident=merged, source=daily, people_count=90)
    return DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.93)


class TestErrorsAreToldWithTheirField:
    """After a wrong code the page comes back with the cursor in the code field: a screen reader
    reads the field, and its description, not the paragraph above it. The field named the error
    (aria-describedby="id_code_error"), an id no element had, so it was never read."""

    def test_a_wrong_second_step_code_is_told_with_the_code_field(self, read, settings):
        settings.REQUIRE_2FA = True
        analyst, client = make_user(roles.ANALYST), Client()
        enrol(analyst)
        sign_in(client, analyst)

        page = read(second_step(client, "000000"))

        expect(page.locator("#id_code")).to_have_accessible_description(re.compile("That code is not right"))

    def test_a_wrong_code_on_the_setup_page_is_told_with_the_code_field(self, read, settings):
        settings.REQUIRE_2FA = True
        analyst, client = make_user(roles.ANALYST), Client()
        open_setup_link(client, analyst)
        sign_in(client, analyst)
        shown = client.get("/accounts/two-factor/setup/")

        page = read(client.post("/accounts/two-factor/setup/", {"code": "000000", **shown_on(shown)}))

        expect(page.locator("#id_code")).to_have_accessible_description(re.compile("That code does not match"))

    def test_a_token_without_a_name_is_told_with_the_name_field_and_its_example(self, read):
        page = read(signed_in().post("/accounts/tokens/", {"name": ""}))

        name = page.get_by_label("What is it for?")
        expect(name).to_have_accessible_description(re.compile("This field is required"))
        # The example its description pointed to was never on the page.
        expect(name).to_have_accessible_description(re.compile("nightly sync"))


def test_the_setup_page_lets_a_screen_reader_start_at_its_first_step(settings):
    # The code field took the focus as the page opened: a screen reader began at step 3, "Type the
    # 6-digit code", past the app to install and the key to type, which it had to go back to find.
    settings.REQUIRE_2FA = True
    analyst, client = make_user(roles.ANALYST), Client()
    open_setup_link(client, analyst)
    sign_in(client, analyst)

    page = client.get("/accounts/two-factor/setup/").content.decode()

    assert '<code id="setup-key">' in page
    assert "autofocus" not in page


def test_the_qr_code_is_named_for_a_screen_reader(read, settings):
    # An unnamed drawing: a screen reader said "image", or nothing, where the page asks to scan it.
    settings.REQUIRE_2FA = True
    analyst, client = make_user(roles.ANALYST), Client()
    open_setup_link(client, analyst)
    sign_in(client, analyst)

    page = read(client.get("/accounts/two-factor/setup/"))

    expect(page.get_by_role("img", name=re.compile("QR code"))).to_have_count(1)


def pixel(page: Page, x: float, y: float) -> tuple[int, int, int]:
    """The colour Chromium paints at (x, y): a one-pixel screenshot, whose one row is its pixel
    whatever PNG filter it was written with (each filter predicts from neighbours it lacks, zero)."""
    png = page.screenshot(clip={"x": x, "y": y, "width": 1, "height": 1})
    chunks, at = {}, 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        chunks[kind] = chunks.get(kind, b"") + png[at + 8 : at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(chunks[b"IDAT"])
    return tuple(raw[1:4])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_qr_code_can_be_scanned_in_the_dark_theme(browser_page, live_server, settings):
    # Black squares on a transparent drawing: in the admin's dark theme (the system's, or the
    # toggle's) they stood on the page's near-black, and a phone's camera found no code.
    settings.REQUIRE_2FA = True
    page = browser_page
    page.emulate_media(color_scheme="dark")
    analyst = make_user(roles.ANALYST, username="analyst")
    _, key = setup_link_create(user=analyst)
    page.goto(f"{live_server.url}{setup_link_path(key)}")
    expect(page.locator("#id_username")).to_be_visible()
    log_in_with_password(page, live_server, "analyst")
    expect(page.locator("h1")).to_have_text("Set up your authenticator app")

    box = page.locator("#qr-code svg").bounding_box()
    # The quiet zone around the code, which a camera needs light.
    assert min(pixel(page, box["x"] + 2, box["y"] + 2)) >= 200
    assert max(pixel(page, box["x"] + box["width"] / 2, box["y"] + 2)) >= 200


def test_the_csv_file_field_is_named(read):
    page = read(signed_in(roles.ANALYST).get("/admin/incidents/incident/import/"))

    # Chromium names an unlabelled file field by its button: "Choose File", of what, unsaid.
    expect(page.locator("input[type=file]")).to_have_accessible_name(re.compile("CSV"))


def test_the_merges_survivor_choice_is_one_named_group(read):
    # Each radio read "INC-000001: 80 repatriated from Tumen, radio button, 1 of 2", never the
    # question, "Which incident survives?", an <h2> the fieldset did not take as its name.
    pair = a_pair()

    page = read(signed_in().get(f"/admin/incidents/incidentmerge/new/{pair.pk}/"))

    group = page.get_by_role("group", name="Which incident survives?")
    expect(group.get_by_role("radio")).to_have_count(2)


def test_the_side_by_side_comparison_names_its_columns_and_its_marks(read):
    # The first two header cells were empty; the "≠" of each differing row stood in a column of
    # no name, a symbol that screen readers at their usual punctuation level leave unsaid.
    pair = a_pair()

    page = read(signed_in().get(f"/admin/incidents/duplicatepair/{pair.pk}/change/"))

    comparison = page.locator(".field-comparison table")
    headers = comparison.get_by_role("columnheader")
    expect(headers).to_have_count(4)
    for header in headers.all():
        expect(header).to_have_accessible_name(re.compile(r"\w"))
    # Title, people, places and claims differ.
    expect(comparison.get_by_role("cell", name=re.compile("differ", re.IGNORECASE))).to_have_count(4)


def test_each_revoke_button_names_its_token(read):
    user, client = make_user(roles.ANALYST), Client()
    client.force_login(user)
    for name in ("nightly sync", "dashboard"):
        token_create(user=user, name=name, second_factor=False)

    page = read(client.get("/accounts/"))

    # "Revoke", "Revoke": which one, a screen reader moving from button to button did not say.
    expect(page.get_by_role("button", name=re.compile("Revoke.*nightly sync"))).to_have_count(1)
    expect(page.get_by_role("button", name=re.compile("Revoke.*dashboard"))).to_have_count(1)
    expect(page.locator("#tokens").get_by_role("columnheader").last).to_have_accessible_name(re.compile(r"\w"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_staff_page_passes_axe(browser_page, live_server, settings):
    # The staff's own pages, and the admin's pages the project adds to or rewrites, in one visit:
    # an analyst's first sign-in through their setup link, then a Reviewer's work.
    settings.REQUIRE_2FA = True
    page = browser_page
    analyst = make_user(roles.ANALYST, username="analyst")
    _, key = setup_link_create(user=analyst)
    page.goto(f"{live_server.url}{setup_link_path(key)}")
    expect(page.locator("#id_username")).to_be_visible()
    assert_axe_passes(page)
    log_in_with_password(page, live_server, "analyst")
    expect(page.locator("h1")).to_have_text("Set up your authenticator app")
    assert_axe_passes(page)
    page.fill("#id_code", current_code("analyst"))
    page.click("#two-factor-setup-form input[type=submit]")
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    assert_axe_passes(page)

    reviewer = make_user(roles.REVIEWER, username="reviewer")
    _, codes = enrol(reviewer)
    page.context.clear_cookies()
    log_in_with_password(page, live_server, "reviewer")
    expect(page.locator("h1")).to_have_text("Second step")
    assert_axe_passes(page)
    page.fill("#id_code", codes[0])
    page.click("#two-factor-form input[type=submit]")
    expect(page.locator("#content h1")).to_have_text("Records")

    pair = a_pair()
    survivor, merged = pair.incident_a, pair.incident_b
    waiting = make_incident(review_state="in_review")
    revision = IncidentRevision.objects.create(
        incident=survivor, proposed_by=analyst, base_version=survivor.version, changes={"data": {"people_count": 85}}
    )
    # Each page, and what shows it is in the state named.
    for path, shown in {
        "/accounts/": "#recovery-codes-form",
        "/admin/incidents/duplicatepair/": "#result_list",
        f"/admin/incidents/duplicatepair/{pair.pk}/change/": ".field-comparison table",
        f"/admin/incidents/incidentrevision/{revision.pk}/change/": "table.revision-diff",
        f"/admin/incidents/incident/{waiting.pk}/change/": "form.review-actions button[value=publish]",
        f"/admin/incidents/incident/{survivor.pk}/history/": "#content h1",
        "/admin/incidents/incident/import/": "input[type=file]",
        f"/admin/incidents/incidentmerge/new/{pair.pk}/": "table.merge-moves",
    }.items():
        page.goto(f"{live_server.url}{path}")
        expect(page.locator(shown).first).to_be_visible()
        assert_axe_passes(page)
    page.click(f"input[value='Merge {merged.public_id} into {survivor.public_id}']")
    # The merge's own page, with its undo.
    expect(page.locator("form.merge-undo")).to_be_visible()
    assert_axe_passes(page)
