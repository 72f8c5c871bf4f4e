"""The parameters of the load test's requests, shared by bench/locustfile.py and
bench/profile_requests.py (which must not import locust: it patches the standard library)."""

import random

API = "/api/v1"
COUNTRIES = ["CN", "KP", "RU", "LA", "VN", "TH", "MN", "MM"]
TYPES = ["forced-repatriation", "arbitrary-detention", "deportation", "torture"]
WORDS = ["repatriation", "detention", "Dandong", "women", "border", "Hyesan"]
GROUPINGS = ["year", "country", "type", "perpetrator"]


def year_range(rng: random.Random = random) -> dict[str, str]:
    year = rng.randint(1996, 2025)
    return {"date_from": f"{year}-01-01", "date_to": f"{year}-12-31"}
