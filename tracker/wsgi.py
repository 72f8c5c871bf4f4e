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
