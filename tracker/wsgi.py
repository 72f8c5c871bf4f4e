import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

application = get_wsgi_application()

# Import every view now rather than at the first request, then move everything loaded so far
# (it lives as long as the process) out of the garbage collector's reach: otherwise each full
# collection walks all of Django, DRF and the app again, measured at 110-150 ms, which a request
# now and then would wait for (bench/bench_api.py: max 150 ms before, 45 ms after).
get_resolver().check()
gc.freeze()
# A request allocates tens of thousands of objects (querysets, forms, rows); with Python's default
# of a young-generation collection every 700 allocations, collecting took about a millisecond of
# each incident list request (bench/bench_api.py). Every 10,000 keeps the garbage of one request
# in the young generation until it is collected, at a few megabytes at most.
gc.set_threshold(10_000, 10, 10)
