"""Many users at once against the deployment the README documents (bench/bench_load.sh runs it).

32 clients by default: readers (anonymous, like the public site and partner tools) list with
filters, open incidents, ask statistics, search and fetch GeoJSON; one client exports the whole
published set as CSV again and again; a few analysts (a reviewer's token) change incidents' counts,
which the statistics' kept totals count at each commit. Each client waits 0.1-0.5 s between requests.
"""

import itertools
import os
import random

from locust import HttpUser, between, task

API = "/api/v1"
COUNTRIES = ["CN", "KP", "RU", "LA", "VN", "TH", "MN", "MM"]
TYPES = ["forced-repatriation", "arbitrary-detention", "deportation", "torture"]
WORDS = ["repatriation", "detention", "Dandong", "women", "border", "Hyesan"]


def _year_range() -> dict[str, str]:
    year = random.randint(1996, 2025)
    return {"date_from": f"{year}-01-01", "date_to": f"{year}-12-31"}


class Reader(HttpUser):
    weight = 28
    wait_time = between(0.1, 0.5)

    def on_start(self):
        response = self.client.get(f"{API}/incidents/?page_size=200", name="list (first page, 200)")
        self.public_ids = [incident["public_id"] for incident in response.json()["results"]]

    @task(6)
    def filtered_list(self):
        params = {"country": random.choice(COUNTRIES), "type": random.choice(TYPES), **_year_range()}
        self.client.get(f"{API}/incidents/", params=params, name="list with filters")

    @task(6)
    def detail(self):
        self.client.get(f"{API}/incidents/{random.choice(self.public_ids)}/", name="detail")

    @task(3)
    def statistics(self):
        params = {"group_by": random.choice(["year", "country", "type", "perpetrator"])}
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


class Exporter(HttpUser):
    """One partner downloading the whole published set, again and again."""

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


class Analyst(HttpUser):
    """Reviewers correcting counts through the API, as the admin's saves do."""

    weight = 3
    wait_time = between(1, 3)
    numbers = itertools.count()

    def on_start(self):
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
            headers={"If-Match": f'"{incident["version"]}"'},
            name="write (PATCH counts)",
        )
