"""Every link the site shows works: a crawl of the public site and of the admin with the sample data.

The data doors (API, CSV, GeoJSON, the admin's lists) refuse with 400 the query parameters they do
not read, a single-valued one given twice, a bad page or ordering, a choice no field holds. A link
that the site itself builds must never be one of those: this test follows every same-site
`<a href>` and `<link rel="alternate" href>` breadth-first, GET only, from the public pages as an
anonymous reader and from the admin's index as a superuser with Confidential access and as an
Analyst, and asserts that each answers 200, 301 or 302 (a redirect's target is crawled too).

Bounded: at most MAX_PAGES pages per reader, at most PER_PATH distinct URLs (query strings) per
path, so that filter combinations in the admin's lists do not explode, and at most PER_SHAPE per
path with its ids as N (the change pages of one model). Links that would end a
session or change state if followed (logout, delete pages, password changes) are not followed;
the admin's actions are POSTs and never appear as links.
"""

import re
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from incidents import roles
from tests.factories import make_user

MAX_PAGES = 400
PER_PATH = 5
# And per shape of path, its numbers as N: the change pages of the 40-odd incident types, each
# reached with several list filters, took a third of the pages otherwise.
PER_SHAPE = 12
ANSWERS_OK = {200, 301, 302}
# Links not followed: they would sign the reader out, or lead to pages that change state or
# credentials (each GET of the authenticator setup page begins a new app, replacing the unconfirmed
# one; without a setup link it answers 403 "Ask for a setup link", by design).
SKIPPED = ("logout", "/delete/", "_delete", "password", "/two-factor/setup/")
PUBLIC_STARTS = ["/", "/ko/", "/statistics/", "/map/"]
ADMIN_STARTS = ["/admin/"]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        href = attributes.get("href")
        if not href:
            return
        if tag == "a" or (tag == "link" and "alternate" in (attributes.get("rel") or "").split()):
            self.hrefs.append(href)


def _same_site(url: str, base: str) -> str | None:
    """The link as a path with its query, without fragment; None for another site or scheme."""
    parts = urlsplit(urljoin(base, url.strip()))
    if parts.scheme not in ("http", "https") or parts.netloc not in ("testserver", ""):
        return None
    return urlunsplit(("", "", parts.path or "/", parts.query, ""))


def _skipped(url: str) -> bool:
    path = urlsplit(url).path
    return any(word in path for word in SKIPPED)


def crawl(client: Client, starts: list[str]) -> tuple[list[str], int]:
    """Breadth-first from `starts`: each broken link with the page that showed it, and the pages read."""
    base = "http://testserver"
    queue = deque((start, "(start)") for start in starts)
    seen = set(starts)
    per_path: dict[str, int] = {}
    per_shape: dict[str, int] = {}
    for start in starts:
        per_path[urlsplit(start).path] = per_path.get(urlsplit(start).path, 0) + 1
    broken: list[str] = []
    pages = 0
    while queue and pages < MAX_PAGES:
        url, found_on = queue.popleft()
        response = client.get(url)
        pages += 1
        # The downloads' throttle (ExportThrottle) answers a crawler 429 after a few exports; the
        # test's cache is this process's memory (conftest's _fresh_cache), emptied between requests.
        cache.clear()
        if response.status_code not in ANSWERS_OK:
            broken.append(f"{url} -> {response.status_code} (linked from {found_on})")
            continue
        if response.status_code in (301, 302):
            targets = [response["Location"]]
        elif "text/html" in response.get("Content-Type", ""):
            parser = _Links()
            parser.feed(response.content.decode(response.charset or "utf-8", errors="replace"))
            targets = parser.hrefs
        else:
            continue
        for target in targets:
            link = _same_site(target, base + url)
            if link is None or link in seen or _skipped(link):
                continue
            path = urlsplit(link).path
            shape = re.sub(r"\d+", "N", path)
            if per_path.get(path, 0) >= PER_PATH or per_shape.get(shape, 0) >= PER_SHAPE:
                continue
            per_path[path] = per_path.get(path, 0) + 1
            per_shape[shape] = per_shape.get(shape, 0) + 1
            seen.add(link)
            queue.append((link, url))
    return broken, pages


@pytest.fixture
def sample():
    """The sample data that `make run` loads (`load_sample`)."""
    call_command("load_sample", verbosity=0)


def _assert_no_broken(broken: list[str], pages: int):
    assert pages > 10, f"the crawl read only {pages} pages"
    assert not broken, f"{len(broken)} broken link(s) among {pages} pages:\n" + "\n".join(broken)


def test_every_public_link_works_for_an_anonymous_reader(sample):
    _assert_no_broken(*crawl(Client(), PUBLIC_STARTS))


def test_every_admin_link_works_for_a_superuser_with_confidential_access(sample):
    client = Client()
    client.force_login(make_user(None, is_staff=True, is_superuser=True, confidential=True))
    _assert_no_broken(*crawl(client, ADMIN_STARTS + PUBLIC_STARTS))


def test_every_admin_link_works_for_an_analyst(sample):
    client = Client()
    client.force_login(make_user(roles.ANALYST))
    _assert_no_broken(*crawl(client, ADMIN_STARTS))
