"""Edits of a record while it is hidden from an audience (confidential; for the public, a draft
too) move none of the versions that audience is told, once it is shown (migration 0110)."""

import pytest

from incidents import roles
from tests.api_support import API, client_for, etag_version, incident_url
from tests.factories import make_claim, make_incident, make_source, make_user


def _edit(user, incident, body) -> None:
    read = client_for(user).get(incident_url(incident))
    assert read.status_code == 200, read.content
    answer = client_for(user).patch(incident_url(incident), body, format="json", HTTP_IF_MATCH=read["ETag"])
    assert answer.status_code == 200, answer.content


def _etag(reader, incident) -> str:
    answer = client_for(reader).get(incident_url(incident))
    assert answer.status_code == 200, answer.content
    return answer["ETag"]


@pytest.mark.parametrize("hidden_as", ["confidential", "draft"])
def test_edits_made_while_an_incident_was_hidden_do_not_show_in_the_version_readers_are_told_once_it_is_shown(
    keeper, hidden_as
):
    """`disclosed_version` / `public_version` (the ETag) "move only with a change they can see"
    (README, *Who may do what*): two incidents hidden alike (confidential, or a draft for the
    public), one of them edited while hidden (the informant's name taken out of its title), then
    both shown: readers without access saw the same thing of both, so are told the same version.
    They were not: the edited one's ETag counted the hidden edit, so the public (and staff without
    Confidential access) learned, from the ETag alone, that a confidential incident was changed
    while they could not see it, and how many times."""
    hidden = {"confidential": True} if hidden_as == "confidential" else {"review_state": "draft"}
    shown = {"confidential": False} if hidden_as == "confidential" else {"review_state": "published"}
    untouched = make_incident(title="Repatriation at Dandong", **hidden)
    edited = make_incident(title="Repatriation at Dandong, told by informant K", **hidden)
    for incident in (untouched, edited):
        make_claim(incident=incident, source=make_source(title="Daily NK"))

    _edit(keeper, edited, {"title": "Repatriation at Dandong"})  # seen by no reader without access
    for incident in (untouched, edited):
        _edit(keeper, incident, shown)

    readers = {"the public": None}
    if hidden_as == "confidential":
        readers["staff without Confidential access"] = make_user(roles.VIEWER)
    for name, reader in readers.items():
        told = {label: _etag(reader, incident) for label, incident in (("untouched", untouched), ("edited", edited))}
        assert etag_version(told["edited"]) == etag_version(told["untouched"]), (name, told)


def _edit_source(user, source, body) -> None:
    url = f"{API}/sources/{source.pk}/"
    read = client_for(user).get(url)
    assert read.status_code == 200, read.content
    answer = client_for(user).patch(url, body, format="json", HTTP_IF_MATCH=read["ETag"])
    assert answer.status_code == 200, answer.content


def test_edits_made_while_a_source_was_confidential_do_not_show_in_the_version_readers_are_told_once_public(keeper):
    """The same for a source: an informant's testimony whose title named them, renamed while
    confidential, then made public, was told to the public and to staff without Confidential access
    with a version one higher than an identical source never renamed."""
    untouched = make_source(title="Testimony of a deportee", confidential=True)
    edited = make_source(title="Testimony of Kim, deported 2023", confidential=True)
    _edit_source(keeper, edited, {"title": "Testimony of a deportee"})
    for source in (untouched, edited):
        _edit_source(keeper, source, {"confidential": False})

    for name, reader in {"the public": None, "staff without Confidential access": make_user(roles.VIEWER)}.items():
        told = {
            label: client_for(reader).get(f"{API}/sources/{source.pk}/")["ETag"]
            for label, source in (("untouched", untouched), ("edited", edited))
        }
        assert etag_version(told["edited"]) == etag_version(told["untouched"]), (name, told)
