"""CSV export through its HTTP door: time to the first byte and to the last of the whole anonymous
`/incidents.csv`, as Django's test client receives it (the body read to its end in memory).

Usage (DATABASE_URL set, from the checkout to measure): python bench/bench_csv_http.py [LABEL] [RUN]
Each run asks from its own address (`RUN`), so that the export rate (20 an hour) counts runs apart.
"""

import argparse
import time
from pathlib import Path

from django_setup import setup_django

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("label", nargs="?", default="csv", help="the name the figures are printed under (default csv)")
parser.add_argument("run", nargs="?", type=int, default=1, help="the run's number, 1-254: its address (default 1)")
# Read before Django is set up, so that --help and a refused argument answer at once.
arguments = parser.parse_args()
if not 1 <= arguments.run <= 254:
    parser.error("RUN must be from 1 to 254 (the last byte of the address it asks from)")
label, run = arguments.label, arguments.run

setup_django(Path.cwd())  # the checkout measured: the one it is run from

from django.test import Client  # noqa: E402 (once Django is set up)

started = time.perf_counter()
response = Client(REMOTE_ADDR=f"198.51.100.{run}").get("/incidents.csv")
assert response.status_code == 200, (response.status_code, response.content[:200])
chunks = iter(response.streaming_content)
size = len(next(chunks))
first_byte = time.perf_counter() - started
for chunk in chunks:
    size += len(chunk)
total = time.perf_counter() - started
response.close()
print(f"{label} run {run}: first byte {first_byte:.2f} s, total {total:.2f} s, {size:,} bytes")
