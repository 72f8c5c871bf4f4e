"""The embedded PostgreSQL that `make run` and `make test` start without DATABASE_URL
(`tracker.embedded_db`), wherever a newcomer put the checkout."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from tracker import embedded_db


def in_another_process(data_dir, call: str) -> str:
    """`embedded_db.<call>(data_dir)`'s printed answer, each in a process of its own as the Makefile
    runs them: the library stops a server only once no process holds a handle on it."""
    code = (
        f"from pathlib import Path; from tracker import embedded_db; print(embedded_db.{call}(Path({str(data_dir)!r})))"
    )
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120).stdout


def test_a_checkout_in_a_folder_with_spaces_starts_its_server():
    # "~/My Projects/incident tracker": the server read its socket directory, passed to it unquoted,
    # as three arguments, and `make run` stopped at once. A short path, as a home folder's is: the
    # library puts the socket elsewhere when the data directory's path is too long for one.
    checkout = Path(tempfile.mkdtemp(prefix="My Projects "))
    data_dir = checkout / ".data" / "postgres"
    try:
        url = in_another_process(data_dir, "ensure_running").strip()
        try:
            address = urlsplit(url)
            socket_dir = unquote(address.netloc.partition("@")[2])
            assert " " not in socket_dir
            with psycopg.connect(host=socket_dir, user="postgres", dbname=address.path.lstrip("/")) as connection:
                assert connection.execute("SELECT current_database()").fetchone() == (embedded_db.DATABASE_NAME,)
        finally:
            in_another_process(data_dir, "stop")
        assert not (data_dir / "postmaster.pid").exists()
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
