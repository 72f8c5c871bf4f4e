"""Many users at once against the deployment the README documents (bench/bench_load.sh runs it).

Two mixes of the same requests, chosen by bench_load.sh (locust runs the user classes it names):

- `people` (the default): how the tool is used. Readers are people (the public site's visitors,
  researchers trying the API): they list with filters, open incidents, ask statistics, search and
  fetch GeoJSON, and read what they got before the next request: 2-10 s (reading a page of 50
  incidents or one incident's claims takes longer; 2 s is someone clicking through results). Partner
  tools do not pause: two sync clients, each with its own account's token, walk the incidents
  changed since a date (1-365 days before the newest change) in pages of 200, following `next`,
  and start over (at most 15 pages a second, under their accounts' rate). One partner exports the
  whole published set as CSV, once; three analysts correct incidents' counts every 1-3 s
  (far more often than people do, so that the statistics' kept totals are written throughout).
  Each client comes from its own address, as the TLS proxy reports it (TRACKER_PROXY_COUNT=1), so
  the production throttles count each one as they would.
- `eager`: the first version of this test, kept to compare with: 28 readers waiting only 0.1-0.5 s
  between requests (no person reads that fast; each offers about 3 requests a second, more than the
  anonymous rate allows, so bench_load.sh turns the throttles off for it), the exporter, the analysts.
"""

import itertools
import os
import random
from datetime import UTC, datetime, timedelta

from load_mix import API, COUNTRIES, GROUPINGS, TYPES, WORDS, year_range
from locust import HttpUser, between, constant_pacing, constant_throughput, task

_addresses = itertools.count(1)


class Client(HttpUser):
    """A client at its own address (the X-Forwarded-For entry the proxy in front would append)."""

    abstract = True

    def on_start(self):
        number = next(_addresses)
        self.client.headers["X-Forwarded-For"] = f"10.{number // 250}.{number % 250}.1"


class ReaderTasks(Client):
    abstract = True

    def on_start(self):
        super().on_start()
        response = self.client.get(f"{API}/incidents/?page_size=200", name="list (first page, 200)")
        self.public_ids = [incident["public_id"] for incident in response.json()["results"]]

    @task(6)
    def filtered_list(self):
        params = {"country": random.choice(COUNTRIES), "type": random.choice(TYPES), **year_range()}
        self.client.get(f"{API}/incidents/", params=params, name="list with filters")

    @task(6)
    def detail(self):
        self.client.get(f"{API}/incidents/{random.choice(self.public_ids)}/", name="detail")

    @task(3)
    def statistics(self):
        params = {"group_by": random.choice(GROUPINGS)}
        if random.random() < 0.5:
            params["country"] = random.choice(COUNTRIES)
        self.client.get(f"{API}/incidents/stats/", params=params, name="statistics")

    @task(3)
    def search(self):
        self.client.get(f"{API}/incidents/", params={"q": random.choice(WORDS)}, name="search")

    @task(2)
    def geojson(self):
        params = {"format": "geojson", "country": random.choice(COUNTRIES), "page_size": 100}
        self.client.get(f"{API}/incidents/", params=params, name="geojson")


class Person(ReaderTasks):
    """Someone reading what each request brings before asking the next."""

    weight = 26
    wait_time = between(2, 10)


class EagerReader(ReaderTasks):
    """The first version's reader (the `eager` mix)."""

    weight = 28
    wait_time = between(0.1, 0.5)


class SyncClient(Client):
    """A partner tool keeping a copy up to date: the incidents changed since a date, in pages of 200,
    following `next` to the end, then again; no pause, except to stay under its account's rate
    (1,200 a minute, 20 a second), as a client that honours the throttle does."""

    fixed_count = 2
    wait_time = constant_throughput(15)
    tokens = itertools.count()

    def on_start(self):
        super().on_start()
        tokens = os.environ["BENCH_SYNC_TOKENS"].split(",")
        self.client.headers["Authorization"] = f"Token {tokens[next(self.tokens) % len(tokens)]}"
        self.next_page = None

    @task
    def sync_page(self):
        if self.next_page is None:
            # From 1-365 days before the newest change (bench_load.sh reads it): before 2026-12-02,
            # "before now", which for demo data made a year earlier left most walks an empty page.
            newest = datetime.fromisoformat(os.environ["BENCH_NEWEST_CHANGE"])
            since = (newest - timedelta(days=random.randint(1, 365))).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            params = {"updated_since": since, "ordering": "updated_at", "page_size": 200}
            response = self.client.get(f"{API}/incidents/", params=params, name="sync (page of 200)")
        else:
            response = self.client.get(self.next_page, name="sync (page of 200)")
        self.next_page = response.json()["next"] if response.ok else None


class Exporter(Client):
    """One partner downloading the whole published set, again and again (the `eager` mix)."""

    fixed_count = 1
    wait_time = between(1, 2)

    @task
    def export(self):
        # Read to the last byte, as a client does. Locust times a streamed response to its first
        # byte; how many whole exports finished in the run shows how long each took.
        with self.client.get(
            f"{API}/incidents.csv", name="export (all published, CSV)", stream=True, catch_response=True
        ) as response:
            for _ in response.iter_content(64 * 1024):
                pass


class OneExport(Exporter):
    """One partner downloading the whole published set once in the run (the `people` mix): the
    export rate (20 an hour) lets no client export in a loop, and a download takes seconds."""

    wait_time = constant_pacing(180)


class Analyst(Client):
    """Reviewers correcting counts through the API, as the admin's saves do."""

    fixed_count = 3
    wait_time = between(1, 3)
    numbers = itertools.count()

    def on_start(self):
        super().on_start()
        self.client.headers["Authorization"] = f"Token {os.environ['BENCH_TOKEN']}"
        response = self.client.get(f"{API}/incidents/?page_size=200&review_state=draft", name="list (drafts, 200)")
        # Each analyst edits incidents of their own, as people do: two editing one incident at the
        # same moment would be refused (412), rightly, and that is not what this measures.
        number = next(self.numbers)
        drafts = [incident["public_id"] for incident in response.json()["results"]]
        self.public_ids = drafts[number::10]

    @task
    def correct_count(self):
        public_id = random.choice(self.public_ids)
        incident = self.client.get(f"{API}/incidents/{public_id}/", name="detail (analyst)").json()
        best = random.randint(1, 500)
        self.client.patch(
            f"{API}/incidents/{public_id}/",
            json={"people_count": best, "people_count_min": None, "people_count_max": None, "count_qualifier": "about"},
            headers={"If-Match": f'"{incident["version_audience"]}.{incident["version"]}"'},
            name="write (PATCH counts)",
        )
