"""Comparing what two writes answered, for the tests that a write answers alike whether or not a
record hidden from its author exists."""

import re

# Per-request noise: CSRF tokens, and the ids of the records each run made.
_CSRF = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]+|(csrftoken=)[^;]+')


def comparable(page: str, *ids) -> str:
    """`page` without its CSRF tokens, with each of `ids` (the records compared, which differ
    between the two runs) written as ID in the URLs that name them."""
    page = _CSRF.sub(lambda match: (match.group(1) or match.group(2)) + "TOKEN", page)
    for record_id in ids:
        page = re.sub(rf"/{record_id}/", "/ID/", page)
    return page
