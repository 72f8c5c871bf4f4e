"""How the reads grow with the data: the same requests against two or more databases (e.g. 1,000,000
and 2,000,000 incidents from `generate_demo_data --seed 1`), taking turns request by request so
that the machine's load weighs on each alike. Prints p50/p95 per database and, for each database
after the first, its p95 (and p50) over the first's.

    .venv/bin/python bench/bench_growth.py --runs 200 \\
        postgres://postgres@127.0.0.1:5432/tracker_1m postgres://postgres@127.0.0.1:5432/tracker_2m

Each database is served by a process of its own (Django reads DATABASE_URL once), calling the WSGI
application as bench_api.py does: server time, no network. The requests, as an anonymous reader and
as a Reviewer with Confidential access (`--reviewer`, created in each database if missing, as the
benchmarks' other users are): the API's list (unfiltered, by country and dates, searched), an
incident (API, its history, the public page), statistics (API and public page) and the public
search, and one export of a narrow slice, which reads every matching incident and so should grow
with them. Filters are taken from the first database and sent to all; the incident shown is the
public one at the same relative position (`--position`) by id in each, the generator being seeded.
The benchmark writes to the databases (the reviewer, a session, the record of confidential reads):
run it on copies.

Goal (issue 19, goal 6): the 2,000,000 / 1,000,000 p95 ratio stays near 1 for all but the export.
"""

import argparse
import multiprocessing
import os
import sys
import time

REVIEWER = "bench-reviewer"


def serve(database_url: str, pipe) -> None:
    """One database's side, in a process of its own. Answers ("setup", parameters, reviewer,
    position) with its description, the parameters it used and its scenarios' labels; then runs the
    scenario of each index it is sent, answering when done; "reset" forgets the timings so far (the
    warm-up); None answers each scenario's median and p95 in milliseconds, and ends."""
    os.environ["DATABASE_URL"] = database_url
    # Imported here: bench_api sets Django up, which reads DATABASE_URL as its settings load.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_api

    _, parameters, reviewer, position = pipe.recv()
    parameters = parameters or bench_api.default_parameters()
    scenarios, description = scenarios_for(bench_api, parameters, reviewer, position)
    pipe.send((description, parameters, [label for label, _ in scenarios]))
    timings = [[] for _ in scenarios]
    while (message := pipe.recv()) is not None:
        if message == "reset":
            timings = [[] for _ in scenarios]
            continue
        started = time.perf_counter()
        scenarios[message][1]()
        timings[message].append((time.perf_counter() - started) * 1000)
        pipe.send(None)
    pipe.send([bench_api.median_and_p95(measured) for measured in timings])


def scenarios_for(bench_api, parameters: dict, reviewer: str, position: float):
    """The requests, as (label, call), with the settings of a server (DEBUG off, no throttles: one
    client asks for everything) kept for the process's life; and what the database holds."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test.utils import override_settings

    from incidents import roles
    from incidents.models import Incident

    unthrottled = {scope: None for scope in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]}
    override_settings(
        DEBUG=False, REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": unthrottled}
    ).enable()
    user, _ = get_user_model().objects.get_or_create(username=reviewer, defaults={"is_staff": True})
    user.groups.set(Group.objects.filter(name__in=[roles.REVIEWER, roles.CONFIDENTIAL_ACCESS]))
    cookie = bench_api.session_cookie(reviewer)

    public = Incident.objects.visible_to(None)
    count, public_count = Incident.objects.count(), public.count()
    shown = public.order_by("pk").values_list("public_id", flat=True)[int(position * (public_count - 1))]
    filters = {key: parameters[key] for key in ("date_from", "date_to", "country")}
    # A month of one country: a slice whose incidents the export reads one by one.
    month = {"country": parameters["country"], "date_from": parameters["date_to"][:4] + "-06-01"}
    month["date_to"] = month["date_from"][:8] + "30"
    word = parameters["q"]
    incidents, stats = "/api/v1/incidents/", "/api/v1/incidents/stats/"
    requests = [
        ("API list, unfiltered", incidents, {"page_size": 50}),
        ("API list, country + dates", incidents, {**filters, "page_size": 50}),
        (f"API list, q={word}", incidents, {"q": word, "page_size": 50}),
        ("API list, q=Dandong (rare)", incidents, {"q": "Dandong", "page_size": 50}),
        ("API detail", f"{incidents}{shown}/", {}),
        ("API stats, group_by=year", stats, {"group_by": "year"}),
        ("API stats, group_by=country, dates", stats, {"group_by": "country", **filters}),
        ("API stats, group_by=perpetrator", stats, {"group_by": "perpetrator"}),
        (f"API stats, group_by=type, q={word}", stats, {"group_by": "type", "q": word}),
        (f"public search, q={word}", "/", {"q": word}),
        ("public browse, country", "/", {"country": parameters["country"]}),
        ("public incident page", f"/incidents/{shown}/", {}),
        ("public statistics, group_by=year", "/statistics/", {"group_by": "year"}),
    ]
    as_reviewer = [
        ("API list, unfiltered", incidents, {"page_size": 50}),
        ("API list, country + dates", incidents, {**filters, "page_size": 50}),
        (f"API list, q={word}", incidents, {"q": word, "page_size": 50}),
        ("API detail", f"{incidents}{shown}/", {}),
        ("API history of the incident", f"{incidents}{shown}/history/", {}),
        ("API stats, group_by=year", stats, {"group_by": "year"}),
        ("API stats, group_by=country, dates", stats, {"group_by": "country", **filters}),
    ]
    scenarios = [(f"anonymous: {label}", bench_api.api_call(path, query)) for label, path, query in requests]
    scenarios += [(f"reviewer: {label}", bench_api.api_call(path, query, cookie)) for label, path, query in as_reviewer]
    scenarios.append(
        (
            "export: CSV, one country, one month",
            bench_api.api_call("/api/v1/incidents.csv", month),
        )
    )
    description = (
        f"{settings.DATABASES['default']['NAME']}: {count:,} incidents ({public_count:,} public), incident {shown}"
    )
    return scenarios, description


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database_urls", nargs="+", metavar="DATABASE_URL", help="the smallest first")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per scenario and database (default 30)")
    parser.add_argument("--reviewer", default=REVIEWER, help=f"the reviewer's username (default {REVIEWER})")
    parser.add_argument(
        "--position",
        type=float,
        default=0.5,
        help="which public incident to show, by its place among them by id, 0 to 1 (default 0.5: the middle)",
    )
    arguments = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    pipes = []
    for url in arguments.database_urls:
        ours, theirs = context.Pipe()
        context.Process(target=serve, args=(url, theirs), daemon=True).start()
        pipes.append(ours)
    parameters = None
    for pipe in pipes:
        pipe.send(("setup", parameters, arguments.reviewer, arguments.position))
        description, parameters, labels = pipe.recv()
        print(description)
    print(f"filters {parameters}; {arguments.runs} runs each; load average {load_average()} before")

    databases = list(range(len(pipes)))
    rounds = [databases] * 2 + [databases if run % 2 == 0 else databases[::-1] for run in range(arguments.runs)]
    for round_number, order in enumerate(rounds):
        if round_number == 2:  # after two rounds of warm-up
            for pipe in pipes:
                pipe.send("reset")
        # Each scenario on every database in turn, the order reversed every other round.
        for index in range(len(labels)):
            for database in order:
                pipes[database].send(index)
                pipes[database].recv()
    percentiles = []
    for pipe in pipes:
        pipe.send(None)
        percentiles.append(pipe.recv())

    header = "".join(f"{f'p50 db{d + 1}':>10}{f'p95 db{d + 1}':>10}" for d in databases)
    ratios = "".join(f"{f'p95 db{d + 1}/db1':>13}{f'p50 db{d + 1}/db1':>13}" for d in databases[1:])
    print(f"{'scenario':52}{header}{ratios}")
    for index, label in enumerate(labels):
        figures = "".join(f"{percentiles[d][index][0]:10.1f}{percentiles[d][index][1]:10.1f}" for d in databases)
        first_median, first_p95 = percentiles[0][index]
        growth = "".join(
            f"{percentiles[d][index][1] / first_p95:12.2f}x{percentiles[d][index][0] / first_median:12.2f}x"
            for d in databases[1:]
        )
        print(f"{label:52}{figures}{growth}")
    print(f"load average {load_average()} after")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
