"""Django set up from the environment (DJANGO_SETTINGS_MODULE, DATABASE_URL), for the benchmarks.

Nothing of Django or of the project is imported here: a script reads its arguments first, then calls
`setup_django()`, then imports what needs it, so that `--help` and a refused argument answer at once
instead of after a few seconds of imports (tests/test_bench_scripts.py runs every script so).
"""

import functools
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def setup_django(checkout: Path = ROOT) -> None:
    """Set Django up with the code of `checkout`, by default the one these scripts are in; once, whoever
    asks first: a script, or a module it imports (demo_rows, bench_api)."""
    sys.path.insert(0, str(checkout))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    import django

    django.setup()
