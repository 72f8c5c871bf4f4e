"""What is wrong with a query string at a door that reads data: a parameter it does not read, or one
it reads a single value of given more than once. Each door says what it reads (the API's views:
`incidents.api.parameters`; the public downloads and pages: `incidents.public.views`; the admin's
lists: `incidents.admin.base`) and answers the errors in its own shape.

Both were answered 200 as if they had not been sent: `?contry=CN` (a misspelt filter) listed every
incident, and `?country=CN&country=KP` the North Korean ones alone (a QueryDict's `get` is the last
value), so a reader took an unfiltered or half-filtered answer for the one asked for.
"""

from collections.abc import Collection

import django_filters
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _


def filter_parameters(filterset_class) -> tuple[set[str], set[str]]:
    """The parameters a filter set reads, and those of them it reads every value of (a multiple
    choice, `verification=alleged&verification=corroborated`)."""
    filters = filterset_class.base_filters
    repeatable = {name for name, filter_ in filters.items() if isinstance(filter_, django_filters.MultipleChoiceFilter)}
    return set(filters), repeatable


def parameter_errors(
    query: MultiValueDict,
    *,
    reads: Collection[str],
    repeatable: Collection[str] = (),
    others_refused: bool = True,
) -> dict[str, list[str]]:
    """The errors of `query` by parameter: one not among `reads` (unless `others_refused` is
    false: a page a shared link reaches with `utm_source` or `fbclid` added), and one of `reads`
    given more than once that is not `repeatable`. No query."""
    errors = {}
    for name, values in query.lists():
        if name not in reads:
            if others_refused:
                names = ", ".join(sorted(reads))
                errors[name] = [_("No such parameter here; this address reads %(names)s.") % {"names": names}]
        elif len(values) > 1 and name not in repeatable:
            errors[name] = [_("Given %(count)d times; give it once.") % {"count": len(values)}]
    return errors
