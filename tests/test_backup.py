"""`manage.py backup` and `restore`: an encrypted dump brought back into a fresh, empty database holds
every table's rows exactly."""

import errno
import io
import os
import resource
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from incidents.models import Incident
from tracker import backup

# pg_dump reads through its own connection: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def conninfo(name: str) -> str:
    database = connection.settings_dict
    return make_conninfo(
        host=database["HOST"], port=database["PORT"], user=database["USER"], password=database["PASSWORD"], dbname=name
    )


@pytest.fixture
def backup_key(settings):
    settings.BACKUP_KEY = backup.new_key()
    return settings.BACKUP_KEY


@pytest.fixture
def empty_database():
    """A freshly created database beside the test database, dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    with psycopg.connect(conninfo("postgres"), autocommit=True) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield conninfo(name)
        server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def fingerprints(dsn: str) -> dict[tuple[str, str], tuple[int, str]]:
    """Each table's row count and a checksum of its rows, whatever their physical order."""
    with psycopg.connect(dsn) as database:
        return {
            (schema, table): database.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(md5(row::text), '' ORDER BY md5(row::text)), ''))"
                    " FROM {} AS row"
                ).format(sql.Identifier(schema, table))
            ).fetchone()
            for schema, table in backup.user_tables(dsn)
        }


@pytest.fixture
def backup_file(tmp_path, backup_key):
    call_command("loaddata", "sample", verbosity=0)
    # An update, so the audit history holds more than the sample's inserts.
    Incident.objects.filter(pk=Incident.objects.order_by("pk").first().pk).update(title="Corrected title")
    path = tmp_path / "tracker.backup"
    call_command("backup", output=path, stdout=StringIO())
    return path


def test_a_backup_restores_every_table_into_an_empty_database(backup_file, empty_database):
    content = backup_file.read_bytes()
    assert content.startswith(backup.MAGIC)
    assert b"Corrected title" not in content and b"incidents_incident" not in content

    output = StringIO()
    call_command("restore", backup_file, into=empty_database, stdout=output)

    # A backup keeps no owner: the restoring role owns every table, which the app must connect as.
    role = connection.settings_dict["USER"]
    assert (
        f"Its tables belong to the role {role}: the app reads them only if it connects as {role}." in output.getvalue()
    )
    original, restored = fingerprints(conninfo(connection.settings_dict["NAME"])), fingerprints(empty_database)
    assert restored == original
    assert original[("public", "incidents_incident")][0] == 4
    assert original[("public", "incidents_incidentevent")][0] >= 5


def test_a_backup_is_refused_under_another_key_and_restores_nothing(backup_file, empty_database, settings):
    settings.BACKUP_KEY = backup.new_key()
    with pytest.raises(CommandError, match="wrong TRACKER_BACKUP_KEY, or the file was altered"):
        call_command("restore", backup_file, into=empty_database)
    assert backup.user_tables(empty_database) == []


def test_an_altered_or_cut_backup_restores_nothing(backup_file, empty_database):
    content = bytearray(backup_file.read_bytes())
    content[len(content) // 2] ^= 1
    backup_file.write_bytes(content)
    with pytest.raises(CommandError, match="altered"):
        call_command("restore", backup_file, into=empty_database)
    backup_file.write_bytes(content[: len(backup.MAGIC) + 8])
    with pytest.raises(CommandError, match="cut short"):
        call_command("restore", backup_file, into=empty_database)
    assert backup.user_tables(empty_database) == []


def test_restore_refuses_a_database_that_is_not_empty(backup_file):
    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", backup_file, into=conninfo(connection.settings_dict["NAME"]))


@pytest.mark.parametrize("option", ["--into", "DATABASE_URL"])
def test_restore_into_a_database_that_does_not_exist_says_to_create_it(backup_file, monkeypatch, option):
    # psycopg's traceback was all an operator who had not run createdb (or mistyped its name) saw.
    missing_name = f"{connection.settings_dict['NAME']}_never_created"
    missing = conninfo(missing_name)
    # DATABASE_URL as Django parsed it into the connection's settings.
    monkeypatch.setitem(connection.settings_dict, "NAME", missing_name)
    into = {"into": missing} if option == "--into" else {}
    with pytest.raises(CommandError) as refused:
        call_command("restore", backup_file, **into)
    message = str(refused.value)
    assert message.startswith(f"{option}: cannot connect to the database to restore into")
    assert "_never_created" in message and "does not exist" in message and "createdb" in message


@pytest.mark.parametrize("into", ["", "zzz", "mysql://tracker@db/tracker", "host=/nonexistent dbname"])
def test_restore_into_an_address_that_is_no_database_address_is_refused_naming_into(tmp_path, settings, into):
    # An empty one (`--into "$TARGET"` with TARGET unset) restored into DATABASE_URL's database, the
    # default; one psycopg cannot parse (a typo, another database's URL) was psycopg's traceback.
    settings.DATABASE_URL = conninfo("never_connected_to")
    not_a_backup = tmp_path / "not-a-backup.bin"
    not_a_backup.write_bytes(b"not a backup")
    with pytest.raises(CommandError, match="--into: give the address of a PostgreSQL database"):
        call_command("restore", str(not_a_backup), "--into", into)


@pytest.mark.parametrize(
    "into",
    [
        # An unencoded @ in the password: libpq takes its tail for the host, and said so.
        "postgres://tracker:pass@SECRETTAIL@127.0.0.1:1/tracker",
        # A % not followed by two hex digits: refused, the whole value quoted.
        "postgres://tracker:pass%zzSECRETTAIL@127.0.0.1:1/tracker",
    ],
)
def test_restore_into_an_address_it_cannot_use_does_not_print_its_password(tmp_path, settings, into):
    settings.BACKUP_KEY = backup.new_key()
    not_read = tmp_path / "tracker.backup"
    not_read.write_bytes(b"not read")

    with pytest.raises(CommandError) as refused:
        call_command("restore", str(not_read), "--into", into)

    assert "--into: " in str(refused.value) and "SECRETTAIL" not in str(refused.value)


def test_restore_without_a_key_asks_for_the_one_the_backup_was_written_with(backup_file, empty_database, settings):
    # Not a new key, as for `backup`: a new key cannot read the file.
    settings.BACKUP_KEY = ""
    with pytest.raises(CommandError, match="Set it to the key the backup was written with") as refused:
        call_command("restore", backup_file, into=empty_database)
    assert "--new-key" not in str(refused.value)
    assert backup.user_tables(empty_database) == []


def test_backup_needs_a_valid_key(tmp_path, settings):
    settings.BACKUP_KEY = "too-short"
    with pytest.raises(CommandError, match="TRACKER_BACKUP_KEY must be 32 bytes"):
        call_command("backup", output=tmp_path / "tracker.backup")
    assert not (tmp_path / "tracker.backup").exists()


def test_backup_names_an_output_it_cannot_create(tmp_path, backup_key):
    with pytest.raises(CommandError, match=r"^-o/--output: cannot write .*: No such file or directory\.$"):
        call_command("backup", "-o", str(tmp_path / "missing" / "tracker.backup"))
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_midway_is_named_and_leaves_no_cut_off_file(tmp_path, backup_key):
    # A full disk (here the file size limit: EFBIG, as ENOSPC would be) escaped as a traceback and
    # left a cut-off file that passed for a backup (found by an attack review). Python ignores
    # SIGXFSZ, so the write fails rather than the process.
    call_command("loaddata", "sample", verbosity=0)
    output = tmp_path / "tracker.backup"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(CommandError, match=r"^-o/--output: writing .* failed: File too large\. Nothing was kept"):
            call_command("backup", "-o", str(output))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not output.exists()


def test_backup_refuses_an_empty_output_name(backup_key):
    # Path("") is the working directory: the refusal said ". exists already", naming no option.
    with pytest.raises(CommandError, match="-o/--output: give a path"):
        call_command("backup", "-o", "")


@pytest.mark.parametrize("name", ["directory", ""])
def test_restore_names_a_file_it_cannot_read(tmp_path, backup_key, name):
    # Opened before any database is touched: a directory (or "", the working one) is told as such.
    path = str(tmp_path) if name else name
    with pytest.raises(CommandError, match="FILE: "):
        call_command("restore", path, into=conninfo("never_connected_to"))


def test_restore_reads_database_url_as_the_app_does(backup_file, settings):
    # `pgsql://`, which dj-database-url (so the app) accepts, was handed to libpq as written: a
    # traceback naming no option, with the URL's password in it. The address is now the app's own
    # connection's (here the test database, which is not empty).
    settings.DATABASE_URL = "pgsql://postgres:S3cret@127.0.0.1:5432/tracker"
    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", backup_file)


@pytest.fixture
def started(monkeypatch):
    """The arguments and environment of each pg_dump and pg_restore the commands start (not of
    their `--version`, which `subprocess.run` starts through Popen too)."""
    launched = []
    popen = backup.subprocess.Popen

    def recorded(arguments, *rest, env=None, **options):
        if "--dbname" in arguments:
            launched.append(([str(argument) for argument in arguments], env or {}))
        return popen(arguments, *rest, env=env, **options)

    monkeypatch.setattr(backup.subprocess, "Popen", recorded)
    return launched


def test_restore_keeps_the_password_off_pg_restores_command_line(backup_file, empty_database, started):
    # Anyone on the machine reads a program's arguments (`ps`, /proc/PID/cmdline) while it runs: the
    # whole address, password included, was pg_restore's --dbname.
    with_password = empty_database + " password=S3cretDbPassw0rd"
    call_command("restore", backup_file, into=with_password, stdout=StringIO())
    ((arguments, environment),) = started
    assert not any("S3cretDbPassw0rd" in argument for argument in arguments)
    assert environment["PGPASSWORD"] == "S3cretDbPassw0rd"
    assert backup.user_tables(empty_database) != []


def test_backup_connects_with_the_tls_settings_of_database_url(tmp_path, backup_key, monkeypatch, started):
    # `?sslmode=verify-full&sslrootcert=…` reached the app's connections but not pg_dump, which
    # connected with libpq's unverified default and streamed the whole database over it.
    major = backup._server_major()
    monkeypatch.setattr(backup, "_server_major", lambda *args: major)
    options = connection.settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "sslmode", "verify-full")
    monkeypatch.setitem(options, "sslrootcert", str(tmp_path / "tracker-ca.pem"))
    output = tmp_path / "tracker.backup"
    # This test server has no TLS: pg_dump, told to verify it, refuses to dump.
    with pytest.raises(CommandError, match="pg_dump failed"):
        call_command("backup", output=output)
    ((arguments, _),) = started
    dbname = conninfo_to_dict(arguments[arguments.index("--dbname") + 1])
    assert (dbname["sslmode"], dbname["sslrootcert"]) == ("verify-full", str(tmp_path / "tracker-ca.pem"))
    assert "password" not in dbname
    assert list(tmp_path.iterdir()) == []


def test_a_backup_stopped_midway_leaves_no_file(tmp_path, backup_key, monkeypatch):
    # Ctrl-C, cron's timeout or the database going away left the part written under the backup's
    # name, which a listing, and a script keeping the newest 48 files, took for a backup.
    call_command("loaddata", "sample", verbosity=0)

    def interrupted(source, target):
        target.write(backup.MAGIC + b"part of it")
        while source.read(1 << 20):  # pg_dump runs to its end
            pass
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "encrypt_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        call_command("backup", output=tmp_path / "tracker.backup")
    assert list(tmp_path.iterdir()) == []


def test_a_backup_is_readable_by_its_owner_alone(tmp_path, backup_key):
    call_command("backup", output=tmp_path / "tracker.backup", stdout=StringIO())
    assert [(path.name, path.stat().st_mode & 0o777) for path in tmp_path.iterdir()] == [("tracker.backup", 0o600)]


def test_backup_names_an_output_name_too_long(tmp_path, backup_key):
    # Path.exists() raises for a name too long (and a directory that cannot be searched): checked
    # before the dump, it was a traceback where the option used to be named.
    with pytest.raises(CommandError, match=r"^-o/--output: cannot write .*: File name too long\.$"):
        call_command("backup", "-o", str(tmp_path / ("b" * 300)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("refusal", [errno.EPERM, errno.EACCES, errno.ENOSYS])
def test_a_backup_is_written_onto_a_filesystem_without_hard_links(tmp_path, backup_key, monkeypatch, refusal):
    # Named by a hard link once whole, it failed on FAT disks and many SMB shares (link(): EPERM),
    # where it was written before; there it is copied into a file created for it.
    def no_hard_links(source, target):
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "link", no_hard_links)
    output = tmp_path / "tracker.backup"
    call_command("backup", "-o", str(output), stdout=StringIO())
    assert [(path.name, path.stat().st_mode & 0o777) for path in tmp_path.iterdir()] == [("tracker.backup", 0o600)]
    assert output.read_bytes().startswith(backup.MAGIC)


@pytest.mark.django_db(transaction=True)
def test_tracker_pg_bin_dir_is_a_fallback_not_an_override(tmp_path, settings):
    # Set once for an older server and left so, it refused every backup after the server's upgrade,
    # the matching installation beside it: "No pg_dump of PostgreSQL 15 or newer found".
    settings.BACKUP_KEY = backup.new_key()
    older = tmp_path / "older-bin"
    older.mkdir()
    (older / "pg_dump").write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {backup._server_major() - 1}.0'\n")
    (older / "pg_dump").chmod(0o755)
    settings.PG_BIN_DIR = str(older)
    output = tmp_path / "tracker.backup"

    call_command("backup", output=output, stdout=io.StringIO())

    assert output.stat().st_size > 0
