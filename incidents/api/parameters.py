"""The query parameters an API view reads, and a 400 naming any other, or a single-valued one given
twice (`incidents.parameters`): every view of the API has `ReadParametersOnlyMixin`."""

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from incidents.parameters import filter_parameters, parameter_errors

# The methods whose lists read their filters and their page's parameters; a write reads neither.
READS = frozenset({"GET", "HEAD"})


class ReadParametersOnlyMixin:
    """For an API view: it reads `format` (DRF's format override), the parameters of its filter
    set (on a list, not a record's detail, which is named by its address) and of its paginator
    (cursor, page_size, ordering: wherever it pages), and its own `extra_query_parameters` (also
    an `@action`'s keyword); anything else is a 400 naming it, as a single-valued one given twice
    is (only a filter set's multiple choices read every value). Checked once the request is
    authenticated and allowed, before the view reads anything."""

    extra_query_parameters: tuple[str, ...] = ()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        reads, repeatable = self.query_parameters()
        errors = parameter_errors(request.query_params, reads=reads, repeatable=repeatable)
        if errors:
            raise ValidationError(errors)

    def reads_a_list(self) -> bool:
        return self.request.method in READS and getattr(self, "action", None) != "retrieve"

    def query_parameters(self) -> tuple[set[str], set[str]]:
        """The parameters the request may give, and those of them it may give more than once."""
        reads, repeatable = {api_settings.URL_FORMAT_OVERRIDE, *self.extra_query_parameters}, set()
        if self.reads_a_list():
            filters, repeatable = self.filter_parameters()
            reads |= filters | self.pagination_parameters()
        return reads, repeatable

    def filter_parameters(self) -> tuple[set[str], set[str]]:
        filterset_class = getattr(self, "filterset_class", None)
        if filterset_class is None or not any(
            issubclass(backend, DjangoFilterBackend) for backend in getattr(self, "filter_backends", ())
        ):
            return set(), set()
        return filter_parameters(filterset_class)

    def pagination_parameters(self) -> set[str]:
        paginator = getattr(self, "paginator", None)
        if paginator is None:
            return set()
        names = ("cursor_query_param", "page_size_query_param", "ordering_query_param", "page_query_param")
        return {getattr(paginator, name) for name in names if getattr(paginator, name, None)}
