import sys
from contextlib import nullcontext

import django_filters
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict
from tqdm import tqdm

from incidents.exports import write_incidents_csv
from incidents.filters import IncidentFilterSet
from incidents.management.arguments import StoreOnce, path_name
from incidents.models import AccessDoor
from incidents.selectors import incidents_matching


def option_name(filter_name: str) -> str:
    return "--" + filter_name.replace("_", "-")


class Command(BaseCommand):
    help = (
        "Write incidents as CSV (the columns of the README's CSV section), with the incident list's filters. "
        "Exports what --user may see; without it, what the public sees."
    )

    def add_arguments(self, parser):
        # One option per filter of the shared filter set, so the command never lags behind the API.
        for name, incident_filter in IncidentFilterSet.base_filters.items():
            repeatable = isinstance(incident_filter, django_filters.MultipleChoiceFilter)
            help_text = str(incident_filter.label or name)
            if repeatable:
                # Their values, which a wrong one's error ("not one of the available choices") does not list.
                values = ", ".join(value for value, _label in incident_filter.extra["choices"])
                help_text += f" (repeatable): {values}"
            parser.add_argument(
                option_name(name),
                dest=f"filter_{name}",
                action="append" if repeatable else StoreOnce,
                metavar=name.upper(),
                help=help_text,
            )
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            type=path_name,
            action=StoreOnce,
            help="Write to FILE instead of standard output.",
        )
        parser.add_argument("--bom", action="store_true", help="Start with a UTF-8 byte order mark (for Excel).")
        parser.add_argument("--user", metavar="USERNAME", action=StoreOnce, help="Export what this user may see.")

    def handle(self, *args, output, bom, user, **options):
        reader = self._user(user)
        params = QueryDict(mutable=True)
        for name in IncidentFilterSet.base_filters:
            value = options[f"filter_{name}"]
            if value is not None:
                params.setlist(name, value if isinstance(value, list) else [value])
        try:
            incidents = incidents_matching(user=reader, filters=params)
        except ValidationError as error:
            raise CommandError(
                "; ".join(f"{option_name(name)}: {' '.join(messages)}" for name, messages in error.message_dict.items())
            ) from None

        # tqdm shows nothing unless standard error is a terminal (disable=None), so the count
        # query runs only when someone watches.
        export = {
            "door": AccessDoor.COMMAND,
            "export_filters": dict(params.lists()),
            "path": "manage.py export_incidents",
            "bom": bom,
        }
        # Opened before the export starts, so that a path it cannot write is told as such, not as a
        # traceback, and nothing is exported (or recorded as read) for it.
        try:
            out = open(output, "wb") if output else nullcontext(sys.stdout.buffer)  # noqa: SIM115 (closed below)
        except OSError as error:
            raise CommandError(f"-o/--output: cannot write {output}: {error.strerror}.") from None
        try:
            with out as stream, tqdm(unit=" rows", disable=None, file=sys.stderr) as progress:
                if not progress.disable:
                    progress.total = incidents.count()
                    progress.refresh()
                write_incidents_csv(incidents, reader, stream, on_rows=progress.update, **export)
                stream.flush()
        except OSError as error:
            # A full disk, or a pipe its reader closed (`| head`): told, not a traceback. What was
            # written so far is a CSV cut off midway.
            where = f"-o/--output: cannot write {output}" if output else "cannot write to standard output"
            raise CommandError(f"{where}: {error.strerror}; the export is incomplete.") from None

    def _user(self, username: str | None):
        if username is None:
            return AnonymousUser()
        try:
            return get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: no user is called {username!r}.") from None
