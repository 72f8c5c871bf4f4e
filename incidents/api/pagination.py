"""Cursor pagination for every list: page 1,000 costs what page 1 costs, and no COUNT(*) runs.

A view names its orderings (`orderings`: the public name → the database ordering, the first one
being the default), so `?ordering=` is validated here once for every list, and a bad value or a bad
`page_size` answers 400 naming the parameter instead of being silently ignored.
"""

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from incidents.history import HISTORY_ORDERING


class StableCursorPagination(CursorPagination):
    page_size_query_param = "page_size"
    ordering_query_param = "ordering"

    @property
    def max_page_size(self):
        return settings.API_MAX_PAGE_SIZE

    invalid_cursor = "Invalid cursor: use the `next` or `previous` link of a page as it is."

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor]}) from None

    def paginate_queryset(self, queryset, request, view=None):
        # A tampered cursor can carry a position that is not a value of the ordering field; the
        # database lookup refuses it when the page is fetched.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor]}) from None

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
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
        if len(orderings) > 1:
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


class HistoryPagination(StableCursorPagination):
    """An audit trail, oldest first, in pages like every other list: a long-lived incident's
    history is thousands of events."""

    def get_orderings(self, view):
        return {"at": HISTORY_ORDERING}
