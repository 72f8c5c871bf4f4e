"""After `make run`, `python manage.py …` typed in the same checkout uses the same settings."""

import os
import stat
import subprocess
import sys
from unittest import mock

from django.conf import settings

from tracker import checkout_env


def test_a_command_typed_after_make_run_uses_its_debug_setting_and_database(tmp_path):
    env_file = tmp_path / "checkout.env"
    checkout_env.save({"DATABASE_URL": "postgres://postgres@db.internal:5432/tracker"}, env_file)
    environ = {}

    checkout_env.load(environ, env_file)

    assert environ == {"DJANGO_DEBUG": "1", "DATABASE_URL": "postgres://postgres@db.internal:5432/tracker"}


def test_the_environment_wins_over_what_make_run_remembered(tmp_path):
    env_file = tmp_path / "checkout.env"
    checkout_env.save({"DATABASE_URL": "postgres://postgres@db.internal:5432/tracker"}, env_file)
    environ = {"DJANGO_DEBUG": "0", "DATABASE_URL": "postgres://postgres@elsewhere/tracker"}

    checkout_env.load(environ, env_file)

    assert environ == {"DJANGO_DEBUG": "0", "DATABASE_URL": "postgres://postgres@elsewhere/tracker"}


def test_the_embedded_server_is_started_again_when_make_run_used_it(tmp_path):
    env_file = tmp_path / "checkout.env"
    checkout_env.save({}, env_file)
    environ = {}
    with mock.patch("tracker.embedded_db.ensure_running", return_value="postgres://postgres@%2Fsocket/tracker"):
        checkout_env.load(environ, env_file)
    assert environ == {"DJANGO_DEBUG": "1", "DATABASE_URL": "postgres://postgres@%2Fsocket/tracker"}


def test_nothing_changes_where_make_run_never_ran(tmp_path):
    environ = {}
    checkout_env.load(environ, tmp_path / "checkout.env")
    assert environ == {}


def test_manage_py_reads_the_file_before_the_settings(tmp_path):
    # manage.py in a child process, with neither variable set, as a newcomer types it; the file is
    # this checkout's own only if `make run` ran here, so a copy of manage.py is pointed at one in tmp_path.
    env_file = tmp_path / "checkout.env"
    checkout_env.save({"DATABASE_URL": "postgres://postgres@db.internal:5432/remembered"}, env_file)
    environment = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "DJANGO_DEBUG")}
    script = (
        "import sys; sys.argv = ['manage.py', 'shell', '--no-imports', '-c', "
        '\'from django.conf import settings; print(settings.DEBUG, settings.DATABASES["default"]["NAME"])\']; '
        f"from tracker import checkout_env; checkout_env.ENV_FILE = __import__('pathlib').Path({str(env_file)!r}); "
        "import manage; manage.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True
    )
    assert result.stdout.split() == ["True", "remembered"], result.stderr


def test_what_make_run_remembers_is_readable_by_its_owner_alone(tmp_path):
    # The caller's DATABASE_URL may hold a password: with the usual umask the file was 0644.
    env_file = tmp_path / ".data" / "checkout.env"
    env_file.parent.mkdir()
    env_file.write_text("# left by an earlier make run\n")
    env_file.chmod(0o644)

    checkout_env.save({"DATABASE_URL": "postgres://tracker:s3cret@db.internal/tracker"}, env_file)

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "s3cret" in env_file.read_text()
