"""An analyst in the field on a phone (360 by 740 CSS pixels, touch, three device pixels to one):
the admin's pages in a real browser (Debian's Chromium through Playwright) at that size.

What is measured is what a thumb meets: a control cut off by its box, a page wider than the screen,
targets smaller than 24 by 24 CSS pixels packed closer than WCAG 2.2's 2.5.8 allows (a 24-pixel
circle on each undersized target may not meet another's)."""

import itertools

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from incidents import roles
from incidents.models import DuplicatePair
from tests.browser_support import launch_chromium
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_browser import choose_in_autocomplete, log_in, watch_for_csp_violations

PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


@pytest.fixture
def phone_page(monkeypatch):
    # As tests/test_browser.py's browser_page, in a phone's browser.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(**PHONE).new_page()
        page.set_default_timeout(15_000)
        violations = watch_for_csp_violations(page)
        yield page
        browser.close()
        connections.close_all()
    assert not violations, f"Content-Security-Policy violations: {violations}"


# Each element's box that reaches past the box of an ancestor that hides what overflows it.
CUT_OFF = """selector => [...document.querySelectorAll(selector)].flatMap(element => {
  const box = element.getBoundingClientRect();
  if (!box.width) return [];
  for (let clip = element.parentElement; clip; clip = clip.parentElement) {
    if (getComputedStyle(clip).overflowX === 'visible') continue;
    const shown = clip.getBoundingClientRect();
    if (box.right > shown.right + 1 || box.left < shown.left - 1) return [`${element.id || element.className}`];
  }
  return [];
})"""


def page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def undersized_targets_too_close(page: Page, selector: str) -> list[str]:
    """The targets matching `selector` that fail 2.5.8: under 24 by 24 CSS pixels, with a 24-pixel
    circle on their centre that meets another target's circle."""
    return page.evaluate(
        """selector => {
          const boxes = [...document.querySelectorAll(selector)].filter(e => e.offsetParent)
            .map(e => [e.textContent.trim() || e.id, e.getBoundingClientRect()]);
          const centre = box => [box.left + box.width / 2, box.top + box.height / 2];
          return boxes.filter(([name, box]) => (box.width < 24 || box.height < 24) && boxes.some(([, other]) => {
            if (other === box) return false;
            const [x, y] = centre(box), [u, v] = centre(other);
            return Math.hypot(x - u, y - v) < 24;
          })).map(([name]) => name);
        }""",
        selector,
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_claims_fields_on_a_phone_are_not_cut_off_at_its_right(phone_page, live_server):
    # Django's narrow layout makes each field 30 pixels narrower than the screen; a claim's box sits
    # further in, so its source's autocomplete lost its arrow, the source connection's list its
    # arrow, the excerpt and locator their right edge and help texts their last letters.
    page = phone_page
    make_user(roles.ANALYST, username="analyst")
    incident = make_incident(title="Tumen repatriation")
    make_claim(incident=incident, source=make_source(title="Daily NK report on the forced repatriation of eighty"))
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")

    assert page.evaluate(CUT_OFF, "#claims-0 .form-row > div, #claims-0 .select2, #claims-0 textarea") == []
    # Its arrow is there to tap, not under the box's edge.
    arrow = page.locator("#claims-0 .select2-selection__arrow").bounding_box()
    row = page.locator("#claims-0 .field-source").bounding_box()
    assert arrow["x"] + arrow["width"] <= row["x"] + row["width"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_source_made_from_a_claims_plus_on_a_phone_shows_its_fields_whole(phone_page, live_server):
    # A phone opens the "+" beside a claim's source as a new tab, as wide as the screen: the form
    # stands further in than the page's, and each list lost its arrow at the right.
    page = phone_page
    make_user(roles.ANALYST, username="analyst")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    popup_address = page.locator("#add_id_claims-0-source").get_attribute("href")
    page.goto(f"{live_server.url}{popup_address}")

    expect(page.locator("#id_kind")).to_be_visible()
    assert page.evaluate(CUT_OFF, ".form-row > div, .select2, select, textarea") == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_records_history_on_a_phone_fits_the_screen(phone_page, live_server):
    # Its changes, the column read most, began beyond the screen's right edge: the whole page slid
    # sideways, header and all.
    page = phone_page
    make_user(roles.REVIEWER, username="reviewer")
    incident = make_incident(title="Forced repatriation of around 500 North Koreans from China at Tumen")
    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/history/")

    expect(page.locator("#audit-history")).to_contain_text("Date precision")
    assert page_width(page) <= 360


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_duplicate_pairs_decisions_on_a_phone_are_apart_enough_to_tap(phone_page, live_server):
    # "Same incident", "Different incidents", "Unsure": labels 25 pixels high, 19 apart, so each
    # overlapped the next, and a thumb on "Different incidents" could choose "Same incident".
    page = phone_page
    make_user(roles.REVIEWER, username="reviewer")
    tumen = make_place(name="Tumen")
    pair = DuplicatePair.objects.create(
        incident_a=make_incident(title="80 repatriated from Tumen", places=[tumen]),
        incident_b=make_incident(title="Tumen repatriation", places=[tumen]),
        score=0.93,
    )
    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/duplicatepair/{pair.pk}/change/")

    labels = [page.locator(f"label[for=id_decision_{index}]").bounding_box() for index in range(3)]
    for above, below in itertools.pairwise(labels):
        assert above["y"] + above["height"] <= below["y"]
    assert undersized_targets_too_close(page, "#id_decision input") == []
    page.get_by_label("Different incidents").tap()
    expect(page.get_by_label("Different incidents")).to_be_checked()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_incident_lists_filters_on_a_phone_are_apart_enough_to_tap(phone_page, live_server):
    # Each filter's choices were 20-pixel lines one under the other: "Draft", "In review",
    # "Published" under a thumb.
    page = phone_page
    make_user(roles.REVIEWER, username="reviewer")
    make_incident(title="Tumen repatriation")
    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/incident/")

    assert undersized_targets_too_close(page, "#changelist-filter li a") == []
    page.locator("#changelist-filter a", has_text="Draft").tap()
    expect(page).to_have_url(f"{live_server.url}/admin/incidents/incident/?review_state__exact=draft")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_organizations_role_on_a_phone_is_told_where_it_is_seen(phone_page, live_server):
    # An analyst names the organization involved and misses its role, a column to the right of the
    # screen in the table of organizations: the page answered "Please correct the error below" and
    # the error itself was in that column, out of sight unless she thought to slide the table.
    page = phone_page
    make_user(roles.ANALYST, username="analyst")
    make_organization(name="Ministry of State Security")
    incident = make_incident(title="Tumen repatriation")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/{incident.pk}/change/")
    page.locator("#involvements-group .add-row a").tap()
    choose_in_autocomplete(page, "id_involvements-0-organization", "State", "Ministry of State Security")
    page.locator("input[name=_save]").tap()

    error = page.locator("#involvements-group .errorlist", has_text="This field is required.")
    expect(error).to_have_count(1)
    page.wait_for_load_state()
    # Where it is as the page opens, the table not slid: within what its scrolling box shows.
    shown = error.evaluate(
        """error => {
          const box = error.getBoundingClientRect(), table = error.closest('.wrapper').getBoundingClientRect();
          return box.left >= table.left && box.right <= table.right && box.right <= window.innerWidth;
        }"""
    )
    assert shown
