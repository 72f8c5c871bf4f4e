"""Argument types shared by the management commands: argparse refuses a bad value with the option's
name before the command changes anything."""

import argparse
from pathlib import Path

import psycopg
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from psycopg.conninfo import conninfo_to_dict


def path_name(value: str) -> Path:
    # An empty name would mean the working directory, or, where the option is optional, that no file
    # was named at all: a script's unset variable (`-o "$OUT"`) must not send the rows elsewhere.
    if not value:
        raise argparse.ArgumentTypeError("give a path, not an empty one")
    return Path(value)


_WEB_ADDRESS = URLValidator(schemes=["http", "https"])


def web_address(value: str) -> str:
    # Printed as the start of a link someone is given: an empty or other address made a link that
    # leads nowhere, and setup_link had already replaced the account's working one by then.
    try:
        _WEB_ADDRESS(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"give an http:// or https:// address, not {value!r}") from None
    return value


def site_path(value: str) -> str:
    # A page of this site, asked for through the test client: it reads only the path of an address
    # (`http://evil.example/` asked for `/`) and `//host/` is no path, so either reported another page.
    if not value.startswith("/") or value.startswith("//"):
        raise argparse.ArgumentTypeError(f"give a path of this site starting with one /, not {value!r}")
    return value


def database_address(value: str) -> str:
    # Where a restore writes. An empty one (`--into "$TARGET"` with TARGET unset) would mean the
    # default database, DATABASE_URL's, as leaving the option out does; one libpq cannot parse (a
    # typo, another database's URL) was psycopg's traceback. Parsed only: reaching it is the command's.
    if value:
        try:
            conninfo_to_dict(value)
        except psycopg.ProgrammingError:
            pass
        else:
            return value
    asked = "give the address of a PostgreSQL database (postgres://user@host/name, or host=… dbname=…)"
    # Not quoted: it may hold a password, and this line reaches cron's mail and CI's logs.
    raise argparse.ArgumentTypeError(
        f"{asked}; the one given is not one (not shown, as it may hold a password; a / @ : # ? or % in it "
        "must be percent-encoded)"
        if value
        else f"{asked}, not ''"
    )


class StoreOnce(argparse.Action):
    """argparse's `store`, refusing the option given twice: `--country CN --country KP` exported
    North Korea's incidents alone (the last value), as the API refuses `country=CN&country=KP`
    (`incidents.parameters`). A repeatable filter (`--verification`) is `append`."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string}: given twice; give it once.")
        setattr(namespace, self.dest, values)
