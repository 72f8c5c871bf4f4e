"""Cursor pagination for every list: page 1,000 costs what page 1 costs, and no COUNT(*) runs.

A cursor holds the last row's value of every column of the ordering (the last is always a unique
one, the id), so a page starts right after that row whatever the number of rows sharing its first
column. DRF's own holds the first column's value and an offset into the rows sharing it, which it
caps at 1,000 (`offset_cutoff`): past 1,000 incidents of one date (8,322 published incidents start
on 1 January 2025 in the million-incident demo data, dated by the year), `next` answered the same
page forever, and reaching that far cost each page a scan of the rows before it.

A view names its orderings (`orderings`: the public name → the database ordering, the first one
being the default), so `?ordering=` is validated here once for every list, and a bad value or a bad
`page_size` answers 400 naming the parameter instead of being silently ignored.
"""

import json
from datetime import UTC

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import DateTimeField, Q
from django.utils import timezone
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination

from incidents.history import HISTORY_ORDERING
from incidents.numbers import is_whole_number


def _read_position(position: str):
    """A cursor's position, JSON text as `_get_position_from_instance` wrote it. A cursor of
    thousands of nested arrays made Python's decoder recurse too deep: a RecursionError, which the
    page answered with a 500, is no position either (ValueError: a 400 naming `cursor`)."""
    try:
        return json.loads(position)
    except RecursionError:
        raise ValueError("a cursor nested too deep") from None


class StableCursorPagination(CursorPagination):
    page_size_query_param = "page_size"
    ordering_query_param = "ordering"

    @property
    def max_page_size(self):
        return settings.API_MAX_PAGE_SIZE

    invalid_cursor = "Invalid cursor: use the `next` or `previous` link of a page as it is."

    # What DRF decodes from a cursor of no tokens. No link a page gives is that (the first page is
    # reached without a cursor), but base64 drops the characters it does not use, so a mangled
    # cursor (`***`, a NUL, `%%`) or an empty one decoded to it, and was answered as page 1 again:
    # a sync whose stored cursor was mangled looped over its first page.
    _NO_POSITION = Cursor(offset=0, reverse=False, position=None)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = self._NO_POSITION
        if cursor == self._NO_POSITION:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor]})
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        # A tampered cursor can carry a position that is not a value of the ordering's columns; the
        # database lookup refuses it when the page is fetched.
        try:
            return super().paginate_queryset(_AfterPosition(queryset, self), request, view)
        except (DjangoValidationError, ValueError, TypeError):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor]}) from None

    def _get_position_from_instance(self, instance, ordering):
        """Every column of the ordering, as JSON text: one row's position, never another's."""
        values = (
            super(StableCursorPagination, self)._get_position_from_instance(instance, (field,)) for field in ordering
        )
        return json.dumps(list(values))

    def after(self, queryset, position: str):
        """The rows of `queryset` after `position` in the ordering (or before it, for a cursor that
        reads backwards): `(a, b) > (x, y)` written as `a >= x AND (a > x OR (a = x AND b > y))`,
        each column in its own direction; the first condition alone bounds the index scan."""
        values = _read_position(position)
        # Each value as `_get_position_from_instance` wrote it: text. A number of JSON's own (`1e400`,
        # which Python reads as infinity) met int() in the lookup, whose OverflowError was a 500; a
        # NUL, which PostgreSQL's text cannot hold, met psycopg's DataError on a text column (the
        # history's event model name), a 500 too.
        if (
            not isinstance(values, list)
            or len(values) != len(self.ordering)
            or not all(isinstance(value, str) and "\x00" not in value for value in values)
        ):
            raise ValueError(position)
        columns = [(field.lstrip("-"), field.startswith("-") != self.cursor.reverse) for field in self.ordering]
        values = [_in_utc(queryset.model, column, value) for (column, _), value in zip(columns, values, strict=True)]
        after, equal = Q(pk__in=[]), {}
        for (column, descending), value in zip(columns, values, strict=True):
            after |= Q(**equal, **{f"{column}__{'lt' if descending else 'gt'}": value})
            equal[column] = value
        first_column, first_descending = columns[0]
        return queryset.filter(Q(**{f"{first_column}__{'lte' if first_descending else 'gte'}": values[0]}) & after)

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not is_whole_number(raw) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Give a whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def get_orderings(self, view) -> dict[str, tuple[str, ...]]:
        """The orderings a client may choose, by public name; the first is the default."""
        return view.orderings

    def get_ordering(self, request, queryset, view):
        orderings = self.get_orderings(view)
        raw = request.query_params.get(self.ordering_query_param)
        if raw is None:
            return next(iter(orderings.values()))
        if raw not in orderings:
            raise ValidationError({self.ordering_query_param: [f"Choose one of {', '.join(orderings)}."]})
        return orderings[raw]

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        orderings = self.get_orderings(view)
        # Declared where there is one ordering too: every list reads `ordering` (400 for another value).
        if orderings:
            parameters.append(
                {
                    "name": self.ordering_query_param,
                    "required": False,
                    "in": "query",
                    "description": f"Sort order; a leading `-` sorts descending. Default: `{next(iter(orderings))}`.",
                    "schema": {"type": "string", "enum": list(orderings)},
                }
            )
        return parameters


def _in_utc(model, column: str, value: str):
    """A time of the position as UTC, as `UtcDateTimeField` cleans `updated_since` and `since`.
    ValueError (a 400 naming the cursor) for a time that has no UTC: one without its offset (a
    page's cursor writes its times with theirs; Django read such a one in the server's time zone,
    with a RuntimeWarning at every request, a 500 wherever warnings are errors), or one whose UTC
    falls outside the years 1 to 9999 (`9999-12-31T23:59:59-23:00`), which met psycopg's DataError
    when the page was fetched, a 500. Any other column's value, or one the field cannot read (which
    the lookup refuses), as it is."""
    try:
        field = model._meta.get_field(column)
    except FieldDoesNotExist:
        return value
    if not isinstance(field, DateTimeField):
        return value
    try:
        time = field.to_python(value)
    except DjangoValidationError:
        return value
    if time is None:
        return value
    if timezone.is_naive(time):
        raise ValueError(value)
    try:
        return time.astimezone(UTC)
    except OverflowError:
        raise ValueError(value) from None


class HistoryPagination(StableCursorPagination):
    """An audit trail, oldest first, in pages like every other list: a long-lived incident's
    history is thousands of events."""

    def get_orderings(self, view):
        return {"at": HISTORY_ORDERING}

    def _get_position_from_instance(self, instance, ordering):
        """The event alone (its id and event model), not its time: a row's time is withheld from a
        reader where who made it is (a merge decided in confidence: `HistoryEntry.when`), and a page
        ending on that row wrote it in its cursor. `after` reads it again."""
        return json.dumps([str(instance.pgh_id), instance.pgh_model])

    def after(self, queryset, position: str):
        """The events after the one `position` names, among those of the page's reader (one query):
        an event they may not see (a tampered cursor) is no position, as a time between their rows
        would tell where it lies."""
        values = _read_position(position)
        if not isinstance(values, list) or len(values) != 2 or not all(isinstance(value, str) for value in values):
            raise ValueError(position)
        event_id, event_model = values
        if "\x00" in event_model or not (event_id.isascii() and event_id.isdigit()):
            raise ValueError(position)
        time = queryset.filter(pgh_id=event_id, pgh_model=event_model).values_list("pgh_created_at", flat=True).first()
        if time is None:
            raise ValueError(position)
        return super().after(queryset, json.dumps([time.isoformat(), event_id, event_model]))


class WithdrawalPagination(StableCursorPagination):
    """Withdrawals, oldest first: a sync reads them up to now, as it reads the incidents changed.
    Ties broken by the record's id (`record_field`), which the row names already (a reader is told
    of a record once): the withdrawal's own id numbers every withdrawal recorded, and a page's
    cursor holding it told the reader how many they were not told of between two they were, and
    when."""

    record_field = "incident_id"

    def get_orderings(self, view):
        return {"withdrawn_at": ("withdrawn_at", self.record_field)}


class RecordWithdrawalPagination(WithdrawalPagination):
    """Withdrawals of sources and responses (`RecordWithdrawal`)."""

    record_field = "record_id"


class _AfterPosition:
    """The queryset as DRF's CursorPagination sees it: its one filter, on the position's first
    column alone (`ordering[0]__lt`), becomes `StableCursorPagination.after` on every column."""

    def __init__(self, queryset, paginator: StableCursorPagination):
        self.queryset, self.paginator = queryset, paginator

    def order_by(self, *ordering):
        return _AfterPosition(self.queryset.order_by(*ordering), self.paginator)

    def filter(self, **lookup):
        ((_, position),) = lookup.items()
        return self.paginator.after(self.queryset, position)

    def __getitem__(self, index):
        return self.queryset[index]
