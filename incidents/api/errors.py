"""Errors the domain raises, as the HTTP answers clients expect: 400 naming the field, 409, 412."""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from incidents.access import confidential_among, record_confidential_access
from incidents.merges import MergeRefused
from incidents.models import AccessDoor
from incidents.services import RecordNotFound, SourceLooksLikeAnother, StillMerged


class VersionMismatch(exceptions.APIException):
    """The body's `version` is not the stored one: someone saved the incident in between."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "version_conflict"


class IdempotencyKeyReused(exceptions.APIException):
    """The request's Idempotency-Key was used before, with another body."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"


class PreconditionFailed(exceptions.APIException):
    """The request's If-Match names a version that is no longer current."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"


class MergeConflict(exceptions.APIException):
    """A merge or its undo refused by the state the records are in (merged already, undone, stale)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "merge_conflict"


class InUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "in_use"


def chosen_parameter(query_params, name: str, choices) -> str | None:
    """The query parameter `name` when it is one of `choices` (a TextChoices), None when it is
    absent or empty; anything else a 400 naming it, rather than a list silently empty (or, for a
    NUL, which PostgreSQL's text cannot hold, a 500)."""
    value = query_params.get(name)
    if not value:
        return None
    if value not in choices.values:
        raise exceptions.ValidationError({name: [f"Choose one of {', '.join(choices.values)}."]})
    return value


def validation_error_from_django(error: DjangoValidationError) -> exceptions.ValidationError:
    """A model's or service's ValidationError (keys like `claims[0].people_count`) as DRF's 400."""
    if not hasattr(error, "error_dict"):
        return exceptions.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: error.messages})
    return exceptions.ValidationError(
        {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
            for field, messages in error.message_dict.items()
        }
    )


def flat_field_errors(detail, name: str = "") -> dict[str, list]:
    """A 400's errors keyed as the services key theirs, `claims[1].people_count`: DRF keys those of a
    nested list's rows by their index under the list (`{"claims": {"1": {"source": […]}}}`, or a
    list with an entry per row), so one request answered its errors in two shapes, as the field
    that named them was checked by the serializer or by the model's rules."""
    if isinstance(detail, dict):
        flat = {}
        for key, value in detail.items():
            if not name:
                flat.update(flat_field_errors(value, str(key)))
            else:
                flat.update(flat_field_errors(value, f"{name}[{key}]" if str(key).isdigit() else f"{name}.{key}"))
        return flat
    if isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            if item:
                flat.update(flat_field_errors(item, f"{name}[{index}]"))
        return flat
    return {name: detail}


def looks_like_another_response(refusal: SourceLooksLikeAnother, request) -> Response:
    """409 naming the sources a new one looks like (only ever ones its writer may see), and how
    to record it all the same; a confidential one named is recorded as read."""
    set_rollback()
    lookalikes = [lookalike.source for lookalike in refusal.lookalikes]
    record_confidential_access(
        user=request.user,
        door=AccessDoor.API,
        records=confidential_among(lookalikes, request.user),
        path=request.get_full_path(),
    )
    messages = " ".join(lookalike.message for lookalike in refusal.lookalikes)
    return Response(
        {
            "detail": f'{messages} Send "another_source_confirmed": true to record it all the same.',
            "code": "looks_like_another_source",
            "sources": [
                {"id": lookalike.source.pk, "title": lookalike.source.title, "field": lookalike.field}
                for lookalike in refusal.lookalikes
            ],
        },
        status=status.HTTP_409_CONFLICT,
    )


def exception_handler(exc, context):
    if isinstance(exc, SourceLooksLikeAnother):
        return looks_like_another_response(exc, context["request"])
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        exc.detail = flat_field_errors(exc.detail)
    if isinstance(exc, RecordNotFound):
        # Like a record that never existed: the same answer whether it is missing or hidden.
        exc = exceptions.NotFound()
    elif isinstance(exc, MergeRefused):
        exc = MergeConflict(str(exc))
    elif isinstance(exc, DjangoValidationError):
        exc = validation_error_from_django(exc)
    elif isinstance(exc, StillMerged):
        exc = InUse(exc.args[0])
    elif isinstance(exc, ProtectedError):
        # Name the kinds of records only: listing them could reveal a confidential claim or incident.
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
        exc = InUse(f"It is still used by {', '.join(kinds)}; remove those uses first.")
    return drf_exception_handler(exc, context)
