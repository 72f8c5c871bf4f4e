"""What `make run` set up, remembered for `python manage.py …` typed later in the same checkout.

`make run` (and `make smoke`) run with DJANGO_DEBUG=1 and either the DATABASE_URL the caller gave or
the embedded PostgreSQL (`tracker.embedded_db`). A command typed afterwards, as the README shows it,
has neither variable; without this file it would stop at "DJANGO_SECRET_KEY must be set". `save`
writes `.data/checkout.env` (git-ignored, like the embedded server's data, so it exists only in a
checkout where `make` ran); manage.py calls `load`, which fills in only the variables the
environment lacks, and starts the embedded server again if it was stopped.

A hand-written reader rather than python-dotenv: the file is written here, in a fixed form of a
few `NAME=value` lines, never by hand.
"""

import os
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".data" / "checkout.env"
# Instead of a URL: the embedded server, whose URL `tracker.embedded_db` gives once it runs.
EMBEDDED = "TRACKER_EMBEDDED_DATABASE"


def save(environ=os.environ, env_file: Path | None = None) -> None:
    """Remember the database `make` uses (the caller's DATABASE_URL, else the embedded server)."""
    env_file = env_file or ENV_FILE
    database = f"DATABASE_URL={environ['DATABASE_URL']}" if environ.get("DATABASE_URL") else f"{EMBEDDED}=1"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only, as backups are: the caller's DATABASE_URL may hold a password.
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an earlier `make run` keeps its mode otherwise
    with os.fdopen(descriptor, "w") as written:
        written.write(
            "# Written by `make run`: the settings `python manage.py` uses in this checkout when the\n"
            "# environment does not set them (tracker/checkout_env.py). Delete it to stop that.\n"
            f"DJANGO_DEBUG=1\n{database}\n"
        )


def load(environ=os.environ, env_file: Path | None = None) -> None:
    """Fill in the variables `make run` used that the environment lacks; a variable set in the
    environment always wins. Does nothing where `make run` never ran."""
    env_file = env_file or ENV_FILE
    if not env_file.exists():
        return
    remembered = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    embedded = remembered.pop(EMBEDDED, None) == "1"
    for name, value in remembered.items():
        environ.setdefault(name, value)
    if embedded and not environ.get("DATABASE_URL"):
        from tracker import embedded_db

        environ["DATABASE_URL"] = embedded_db.ensure_running()


if __name__ == "__main__":
    if sys.argv[1:] != ["save"]:
        sys.exit("usage: python -m tracker.checkout_env save")
    save()
