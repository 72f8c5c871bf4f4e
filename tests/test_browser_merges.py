"""A Reviewer merges a duplicate pair in a real browser (Debian's headless Chromium through
Playwright): "Same incident" on the pair, the confirmation page, the merge, and its undo."""

import pytest
from playwright.sync_api import expect

from incidents import roles
from incidents.models import DuplicatePair, Incident
from tests.api_support import client_for, incident_url
from tests.factories import make_claim, make_incident, make_place, make_source, make_user

# The browser fixture (Chromium watched for Content-Security-Policy violations), shared.
from tests.test_browser import browser_page as browser_page
from tests.test_browser import log_in


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_reviewer_decides_same_incident_confirms_the_merge_then_undoes_it(browser_page, live_server):
    page = browser_page
    make_user(roles.REVIEWER, username="reviewer")
    tumen = make_place(name="Tumen")
    daily = make_source(title="Daily NK")
    survivor = make_incident(title="80 repatriated from Tumen", places=[tumen], people_count=80)
    merged = make_incident(title="Tumen repatriation", places=[tumen, make_place(name="Yanji")], people_count=90)
    make_claim(incident=survivor, source=daily, people_count=80)
    make_claim(incident=merged, source=daily, people_count=90, excerpt="about 90 people")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.93)

    log_in(page, live_server, "reviewer")
    page.goto(f"{live_server.url}/admin/incidents/duplicatepair/{pair.pk}/change/")
    page.get_by_label("Same incident").check()
    page.click("input[name=_save]")

    expect(page.locator("h1")).to_contain_text(f"Merge {merged.public_id} into {survivor.public_id}?")
    expect(page.locator("table.merge-moves")).to_contain_text("Yanji")
    expect(page.locator(".merge-confirm")).to_contain_text("about 90 people")  # the conflict to resolve
    expect(page.locator("table.revision-diff")).to_contain_text("People count max")
    page.fill("form[method=post] #id_note", "one event, two reports")
    page.click(f"input[value='Merge {merged.public_id} into {survivor.public_id}']")

    expect(page.locator(".messagelist")).to_contain_text("done")
    assert Incident.objects.get(pk=merged.pk).merged_into_id == survivor.pk
    assert client_for().get(incident_url(merged)).status_code == 301

    # At 1280 pixels the undo's fieldset lay beside the merge's fields, a word wide, the page wider
    # than the window.
    page.set_viewport_size({"width": 1280, "height": 900})
    fields = page.locator("#incidentmerge_form fieldset").bounding_box()
    undo = page.locator("form.merge-undo fieldset").bounding_box()
    assert undo["y"] >= fields["y"] + fields["height"] and undo["width"] >= fields["width"] - 2
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.click("input[value='Undo merge']")

    expect(page.locator(".messagelist")).to_contain_text("are as they were")
    assert Incident.objects.get(pk=merged.pk).merged_into_id is None
    assert client_for().get(incident_url(merged)).status_code == 200
