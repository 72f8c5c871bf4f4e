"""The web's classic attacks on the site's own pages: a link that leads a reader of this site to
another one, and another site's page that uses its visitors' browsers against their own accounts."""

import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urljoin, urlsplit

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import sync_playwright
from rest_framework.test import APIClient

from incidents import roles
from tests.api_support import API
from tests.browser_support import launch_chromium
from tests.factories import make_user
from tests.test_accounts import PASSWORD, sign_in

# Every `<a>` of the language switch (templates/public/base.html): the only ones with `hreflang`.
LANGUAGE_LINK = re.compile(r'<a href="([^"]*)"[^>]*hreflang=')


def language_links(response) -> list[str]:
    """Where the page's language switch leads, as absolute addresses."""
    return [urljoin("http://testserver/page/", href) for href in LANGUAGE_LINK.findall(response.content.decode())]


class TestLanguageSwitchStaysOnThisSite:
    """Anyone may send a reader a link to this site whose page's language switch led to another:
    the reader trusts the address they opened, and the site they land on may ask them to sign in."""

    @pytest.mark.parametrize("address", ["/%2Fevil.example/", "/%2Fevil.example/map/"])
    def test_the_page_not_found_links_its_languages_to_this_site(self, address):
        page = Client().get(address)
        assert page.status_code == 404
        links = language_links(page)
        assert links and {urlsplit(link).netloc for link in links} == {"testserver"}, links

    @pytest.mark.browser
    @pytest.mark.django_db(transaction=True)
    def test_a_reader_who_switches_language_on_a_page_not_found_stays_on_this_site(self, live_server, monkeypatch):
        # Playwright's sync API runs an event loop in this thread (tests/test_browser_public.py).
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                # The other site answers whatever the browser asks of it, here in place of the network.
                page.route("http://evil.example/**", lambda route: route.fulfill(body="Sign in again"))
                page.goto(f"{live_server.url}/%2Fevil.example/")
                page.get_by_role("link", name="한국어").click()
                page.wait_for_load_state()
                assert urlsplit(page.url).netloc == urlsplit(live_server.url).netloc, page.url
            finally:
                browser.close()
        connections.close_all()


@contextmanager
def another_site(page: str):
    """The address of a site of its own, another to the browser than the live server's: a server on
    this machine that answers `page` to every request. On this machine, not a page Playwright
    makes up: Chromium keeps a page from the internet from asking this machine's addresses."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


class TestTokenRequestsFromAnotherSite:
    """The token endpoint takes a form's fields, which any page may post from its visitors'
    browsers without their knowing: each a failed sign-in, counted against the visitor's own
    address."""

    ELSEWHERE = {"HTTP_ORIGIN": "https://evil.example", "HTTP_SEC_FETCH_SITE": "cross-site"}

    def test_another_sites_page_cannot_lock_a_reviewer_out_from_their_office(self):
        reviewer = make_user(roles.REVIEWER)
        office = "198.51.100.7"
        assert sign_in(Client(REMOTE_ADDR=office), reviewer)["Location"] == "/admin/"

        # A page the reviewer opened at the office posts wrong passwords for them, as forms do.
        for guess in range(5):
            APIClient(REMOTE_ADDR=office).post(
                f"{API}/auth/token/",
                {"username": reviewer.username, "password": f"guess {guess}"},
                format="multipart",
                **self.ELSEWHERE,
            )

        answer = sign_in(Client(REMOTE_ADDR=office), reviewer)
        assert (answer.status_code, answer.get("Location")) == (302, "/admin/")

    @pytest.mark.parametrize("origin", ["https://evil.example", "null"])
    def test_another_sites_page_is_refused_a_token_even_with_the_right_password(self, origin):
        partner = make_user(None)
        answer = APIClient().post(
            f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD}, HTTP_ORIGIN=origin
        )
        assert answer.status_code == 403
        assert "another site" in answer.json()["detail"]

    def test_this_sites_own_pages_and_clients_without_a_browser_still_get_tokens(self):
        partner = make_user(None)
        for origin in ({}, {"HTTP_ORIGIN": "http://testserver"}):
            answer = APIClient().post(
                f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD}, **origin
            )
            assert answer.status_code == 200, answer.content

    @pytest.mark.browser
    @pytest.mark.django_db(transaction=True)
    def test_in_a_real_browser_another_sites_page_locks_nobody_out(self, live_server, monkeypatch):
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        reviewer = make_user(roles.REVIEWER)
        # The live server sees every client at 127.0.0.1: the reviewer's office, where they sign in.
        assert sign_in(Client(REMOTE_ADDR="127.0.0.1"), reviewer)["Location"] == "/admin/"
        # Five wrong passwords, posted as a form's fields (no preflight, no answer to read).
        guesses = f"""<!doctype html><title>Read this</title>
            <script>
            (async () => {{
              for (let guess = 0; guess < 5; guess++) {{
                const body = new URLSearchParams({{username: "{reviewer.username}", password: "guess " + guess}});
                await fetch("{live_server.url}{API}/auth/token/", {{method: "POST", mode: "no-cors", body}});
              }}
              document.title = "sent";
            }})();
            </script>"""
        with another_site(guesses) as elsewhere, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(elsewhere)
                page.wait_for_function("document.title === 'sent'")
            finally:
                browser.close()
        connections.close_all()

        answer = sign_in(Client(REMOTE_ADDR="127.0.0.1"), reviewer)
        assert (answer.status_code, answer.get("Location")) == (302, "/admin/")


class TestTokenRequestsFromThisSitesOwnPages:
    """The token endpoint refuses a browser's request whose Origin names another site: those
    Django's own CSRF check takes for this site's must be taken too."""

    @pytest.mark.django_db
    def test_an_origin_trusted_by_a_wildcard_is_not_refused(self, settings):
        # Behind a proxy that ends TLS without saying so (no TRACKER_PROXY_COUNT), the site sees
        # http:// where the browser sees https://; CSRF_TRUSTED_ORIGINS names the office's sites as
        # Django allows, by a wildcard. Django's CSRF check takes the admin's forms from them.
        settings.ALLOWED_HOSTS = ["tracker.example.org"]
        settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]
        here = {"HTTP_HOST": "tracker.example.org", "HTTP_ORIGIN": "https://tracker.example.org"}
        client = Client(enforce_csrf_checks=True)
        client.get("/admin/login/", HTTP_HOST="tracker.example.org")
        sign_in_form = {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "username": "x", "password": "y"}
        assert client.post("/admin/login/", sign_in_form, **here).status_code == 200

        partner = make_user(None)
        answer = APIClient().post(f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD}, **here)
        assert answer.status_code == 200, answer.content

    @pytest.mark.django_db
    @pytest.mark.parametrize(
        "origin", ["https://evil.example", "https://example.org.evil.example", "http://tracker.example.org"]
    )
    def test_a_wildcard_trusts_its_own_subdomains_and_scheme_only(self, settings, origin):
        settings.ALLOWED_HOSTS = ["tracker.example.org"]
        settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]
        partner = make_user(None)
        answer = APIClient().post(
            f"{API}/auth/token/",
            {"username": partner.username, "password": PASSWORD},
            HTTP_HOST="tracker.example.org",
            HTTP_ORIGIN=origin,
            secure=True,
        )
        assert answer.status_code == 403


def test_a_refused_requests_page_links_its_languages_to_this_site():
    # The page of a refused request (here one of too many parameters) links its language switch to
    # its path alone, as Django decoded it: `/%5Cevil.example/` is the path `/\evil.example/`,
    # which a browser reads as `//evil.example/`, another site (as it drops tabs and newlines).
    query = "&".join(f"p{number}=" for number in range(10_001))
    page = Client().get(f"/%5Cevil.example/?{query}")
    assert page.status_code == 400
    # As a browser reads an address (the WHATWG URL standard), not as Python's urljoin does.
    hrefs = [href.replace("\\", "/") for href in LANGUAGE_LINK.findall(page.content.decode())]
    links = [urljoin("http://testserver/page/", href) for href in hrefs]
    assert links and {urlsplit(link).netloc for link in links} == {"testserver"}, links
