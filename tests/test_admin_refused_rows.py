"""A colleague's save that removes one of an incident's rows (a claim deleted or made confidential, a
victim group or organization taken off) while an analyst has its page open: her Save is refused as
stale, and the refused page must show every row as she sent it, each under the row its id names.
Django's admin drew the rows' forms against the rows stored now, by position: each form after the
removed row under the next row's name, and the last form left off the page, with what she typed in
it."""

import re

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse
from playwright.sync_api import expect

from incidents import roles, services
from incidents.models import Claim, Involvement, VictimGroup
from tests.factories import make_claim, make_incident, make_organization, make_source, make_user
from tests.form_support import form_fields
from tests.test_browser import browser_page as browser_page
from tests.test_browser import log_in

pytestmark = pytest.mark.django_db


def change_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def opened(client, user, incident) -> dict:
    client.force_login(user)
    return form_fields(client.get(change_url(incident)).content.decode(), "incident_form")


def rows_changed_by(colleague, incident, name: str, change) -> None:
    """`colleague` saves the incident's rows `name` as `change` makes them of the stored rows (each
    its fields' values, links as records), None for a row taken off."""
    incident.refresh_from_db()
    stored = [
        {
            **model_to_dict(row, exclude=["incident", "source", "organization"]),
            **{link: getattr(row, link) for link in ("source", "organization") if hasattr(row, link)},
        }
        for row in getattr(incident, name).order_by("id")
    ]
    rows = [row for row in change(stored) if row is not None]
    services.incident_update(incident=incident, user=colleague, expected_version=incident.version, **{name: rows})


def shown_rows(html: str, prefix: str) -> dict[str, tuple[str, dict]]:
    """The rows of the inline `prefix` the page draws, by the id each carries ("" for a new row):
    the row's heading and the values of its fields."""
    rows = {}
    for block in re.split(r'<div class="inline-related|<tr class="form-row', html)[1:]:
        index = re.search(rf'name="{prefix}-(\d+)-id"', block)
        if index is None:
            continue
        fields = form_fields(f'<form id="f">{block}</form>', "f")
        label = re.search(r'<span class="inline_label">(.*?)</span>|<td class="original">\s*<p>(.*?)</p>', block, re.S)
        heading = " ".join(part for part in (label.groups() if label else ()) if part).strip()
        row = {name.split("-", 2)[2]: value for name, value in fields.items() if name.startswith(f"{prefix}-")}
        rows[f"{index.group(1)}:{row.get('id', '')}"] = (heading, row)
    return rows


def assert_every_row_shown_as_sent(html: str, prefix: str, sent: dict, typed: dict[int, dict]) -> dict:
    """Every row sent is drawn at its own index, with its own id and what was typed in it; the
    management form is the one sent, so the page's rows and its counts agree."""
    shown = form_fields(html, "incident_form")
    for count in ("TOTAL_FORMS", "INITIAL_FORMS"):
        assert shown[f"{prefix}-{count}"] == sent[f"{prefix}-{count}"]
    rows = shown_rows(html, prefix)
    expected = {
        f"{index}:{sent.get(f'{prefix}-{index}-id', '')}" for index in range(int(sent[f"{prefix}-TOTAL_FORMS"]))
    }
    assert set(rows) == expected
    for index, values in typed.items():
        key = f"{index}:{sent.get(f'{prefix}-{index}-id', '')}"
        for name, value in values.items():
            assert rows[key][1][name] == value, (key, name)
    return {key.split(":")[1]: heading for key, (heading, _) in rows.items()}


@pytest.fixture
def incident():
    incident = make_incident(title="About 500 North Koreans returned", review_state="draft", people_count=500)
    for title, count in (("HRW", 500), ("RFA", 40), ("Yonhap", 60)):
        make_claim(incident=incident, source=make_source(title=title), people_count=count)
    return incident


def claim_of(incident, title: str) -> Claim:
    return incident.claims.get(source__title=title)


def typed_into_claims(form: dict, new_source) -> tuple[dict, dict]:
    """An analyst's edits of each claim row, and a new claim typed into the extra row."""
    typed = {
        0: {"excerpt": "HRW: 500 people, per a family member"},
        1: {"people_count": "45", "excerpt": "RFA: 45 at the Tumen crossing"},
        2: {"excerpt": "Yonhap: about 60, per a ministry official", "locator": "p. 2"},
        3: {"source": str(new_source.pk), "people_count": "7", "count_qualifier": "exact", "excerpt": "KBS: 7"},
    }
    sent = {**form, "_save": "Save"}
    for index, values in typed.items():
        sent.update({f"claims-{index}-{name}": value for name, value in values.items()})
    return sent, typed


def test_a_claim_a_colleague_deleted_keeps_every_claim_typed_on_the_refused_page_under_its_own_claim(client, incident):
    """Alice deletes the HRW claim and corrects Yonhap's figure while an analyst edits all three and
    adds one: the refused page drew HRW's row under "RFA", RFA's under "Yonhap", and no Yonhap row at
    all: what the analyst typed into it was gone from the page, which asks her to apply it again."""
    ids = {title: claim_of(incident, title).pk for title in ("HRW", "RFA", "Yonhap")}
    form = opened(client, make_user(roles.ANALYST), incident)
    rows_changed_by(
        make_user(roles.ANALYST, username="alice"),
        incident,
        "claims",
        lambda rows: [None, rows[1], {**rows[2], "people_count": 65}],
    )
    sent, typed = typed_into_claims(form, make_source(title="KBS"))

    answer = client.post(change_url(incident), sent)

    html = answer.content.decode()
    assert answer.status_code == 200
    assert f"{incident.public_id} was changed by alice at " in html
    headings = assert_every_row_shown_as_sent(html, "claims", sent, typed)
    assert "RFA" in headings[str(ids["RFA"])] and "Yonhap" in headings[str(ids["Yonhap"])]
    # The deleted claim's row is no other claim's.
    assert not any(title in headings[str(ids["HRW"])] for title in ("RFA", "Yonhap"))
    assert "deleted" in html.split('name="claims-0-id"')[0].rsplit('class="inline-related', 1)[1]
    assert sorted(Claim.objects.filter(incident=incident).values_list("people_count", flat=True)) == [40, 65]


def test_a_claim_made_confidential_since_is_kept_as_typed_and_nothing_of_it_now_is_shown(client, incident):
    """A Reviewer with Confidential access makes the RFA claim confidential and rewrites its excerpt
    (an informant's words) while an analyst without that access edits every claim. The analyst saw
    the RFA claim when she opened the page, so what she typed into it is hers to keep; what it holds
    now, and that it is confidential rather than deleted, is not hers to read."""
    ids = {title: claim_of(incident, title).pk for title in ("HRW", "RFA", "Yonhap")}
    form = opened(client, make_user(roles.ANALYST), incident)
    rows_changed_by(
        make_user(roles.REVIEWER, confidential=True),
        incident,
        "claims",
        lambda rows: [
            rows[0],
            {**rows[1], "confidential": True, "excerpt": "Informant K.: 43 taken at night"},
            {**rows[2], "people_count": 65},
        ],
    )
    sent, typed = typed_into_claims(form, make_source(title="KBS"))

    answer = client.post(change_url(incident), sent)

    html = answer.content.decode()
    assert answer.status_code == 200
    assert f"{incident.public_id} was changed by " in html
    headings = assert_every_row_shown_as_sent(html, "claims", sent, typed)
    assert "HRW" in headings[str(ids["HRW"])] and "Yonhap" in headings[str(ids["Yonhap"])]
    assert not any(title in headings[str(ids["RFA"])] for title in ("HRW", "Yonhap"))
    assert "Informant K." not in html and "confidential" not in headings[str(ids["RFA"])].lower()


def test_the_refused_page_sent_back_as_it_is_is_refused_again_with_its_reason_not_a_form_error(client, incident):
    """The refused page's Save pressed again: its rows and its counts must still agree (no row
    missing from a form that counts it, refused as "This field is required." on a hidden id), and
    the reason shown is the colleague's save."""
    form = opened(client, make_user(roles.ANALYST), incident)
    rows_changed_by(
        make_user(roles.ANALYST, username="alice"), incident, "claims", lambda rows: [None, rows[1], rows[2]]
    )
    sent, _ = typed_into_claims(form, make_source(title="KBS"))
    refused = client.post(change_url(incident), sent).content.decode()

    again = {**form_fields(refused, "incident_form"), "_save": "Save"}
    answer = client.post(change_url(incident), again)

    html = answer.content.decode()
    assert answer.status_code == 200
    assert f"{incident.public_id} was changed by alice at " in html
    assert "ManagementForm" not in html
    assert all(again.get(f"claims-{index}-id") is not None for index in range(int(again["claims-TOTAL_FORMS"])))
    for form_errors in (
        form.errors for formset in answer.context["inline_admin_formsets"] for form in formset.formset.forms
    ):
        assert "This field is required." not in str(form_errors)


def test_victim_groups_a_colleague_took_off_keep_every_row_typed_under_its_own_group(client):
    incident = make_incident(review_state="draft", people_count=80)
    for description in ("women", "children", "soldiers"):
        VictimGroup.objects.create(incident=incident, description=description, count=10)
    form = opened(client, make_user(roles.ANALYST), incident)
    rows_changed_by(
        make_user(roles.ANALYST, username="alice"), incident, "victim_groups", lambda rows: [rows[0], None, rows[2]]
    )
    typed = {
        0: {"count": "12", "description": "women, most of them from Hyesan"},
        1: {"count": "30", "description": "children under 12"},
        2: {"count": "4", "description": "soldiers who deserted"},
    }
    sent = {**form, "_save": "Save"}
    for index, values in typed.items():
        sent.update({f"victim_groups-{index}-{name}": value for name, value in values.items()})

    answer = client.post(change_url(incident), sent)

    assert answer.status_code == 200
    assert_every_row_shown_as_sent(answer.content.decode(), "victim_groups", sent, typed)
    assert VictimGroup.objects.filter(incident=incident).count() == 2


def test_organizations_a_colleague_took_off_keep_every_row_typed_under_its_own_involvement(client):
    incident = make_incident(review_state="draft", people_count=80)
    organizations = [make_organization(name=name) for name in ("Police", "Army", "Navy")]
    for organization in organizations:
        Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")
    form = opened(client, make_user(roles.ANALYST), incident)
    rows_changed_by(
        make_user(roles.ANALYST, username="alice"), incident, "involvements", lambda rows: [None, rows[1], rows[2]]
    )
    typed = {0: {"role": "facilitator"}, 1: {"role": "receiving_state"}, 2: {"role": "other"}}
    sent = {**form, "_save": "Save"}
    for index, values in typed.items():
        sent.update({f"involvements-{index}-{name}": value for name, value in values.items()})

    answer = client.post(change_url(incident), sent)

    assert answer.status_code == 200
    assert_every_row_shown_as_sent(answer.content.decode(), "involvements", sent, typed)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_refused_page_shows_the_claim_typed_after_the_one_a_colleague_deleted(
    browser_page, live_server
):
    page = browser_page
    incident = make_incident(title="About 500 North Koreans returned", review_state="draft", people_count=500)
    for title, count in (("HRW", 500), ("RFA", 40), ("Yonhap", 60)):
        make_claim(incident=incident, source=make_source(title=title), people_count=count)
    make_user(roles.ANALYST, username="analyst")
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}{change_url(incident)}")
    page.fill("#id_claims-1-people_count", "45")
    page.fill("#id_claims-2-excerpt", "Yonhap: about 60, per a ministry official")
    rows_changed_by(
        make_user(roles.ANALYST, username="alice"), incident, "claims", lambda rows: [None, rows[1], rows[2]]
    )
    page.click("input[name=_save]")

    expect(page.locator(".errornote + .errorlist, .errorlist.nonfield").first).to_contain_text("was changed by alice")
    expect(page.locator("#id_claims-2-excerpt")).to_have_value("Yonhap: about 60, per a ministry official")
    expect(page.locator("#id_claims-1-people_count")).to_have_value("45")
    expect(page.locator("#claims-0 .inline_label")).not_to_contain_text("RFA")
    expect(page.locator("#claims-0")).to_contain_text("deleted, or hidden from you")
    expect(page.locator("#claims-1 .inline_label")).to_contain_text("RFA")
    expect(page.locator("#claims-2 .inline_label")).to_contain_text("Yonhap")
