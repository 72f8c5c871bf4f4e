"""A write that PostgreSQL stopped because it met another at the same moment answers 409, saying so.

Writers wait for each other on purpose: a claim for its source, a place link for the place's chain,
an organization or type where an incident links it (the lock triggers of migrations 0032-0050), so
that the kept rows each one refreshes see the other's change. Two such waits can close a cycle (an
analyst's save waits for a place a reviewer is changing, while the reviewer's refresh waits for the
analyst's incident), and PostgreSQL then stops one of the two with a deadlock error; a serializable
transaction can be stopped alike. The stopped one's transaction is rolled back whole, so nothing of
it was saved, and saving again succeeds once the other has committed. That is what the writer is
told, on every door (the admin, the API, an import), instead of a server error: this middleware
answers the admin's and the API's writes; the import, which reports its own errors, asks
`is_write_conflict`. A write whose link was deleted while it waited for it (a claim for its source)
fails at commit on the foreign key, and is told the same.
"""

import psycopg
from django.contrib import admin
from django.http import JsonResponse
from django.template.response import TemplateResponse

from tracker.replicas import SAFE_METHODS

MESSAGE = (
    "Your change met another change being saved at the same moment, and was not saved: nothing of it was "
    "written. Save it again."
)


def is_write_conflict(error: BaseException) -> bool:
    """Whether `error`, a database error Django raised, is PostgreSQL stopping the transaction for
    meeting another: class 40 of its errors, "transaction rollback", a deadlock (40P01) or a
    serialization failure (40001), or a foreign key violation (23503). psycopg's classes for them
    share no base class of their own.

    Every door checks that what a write links to exists before writing it, so a link to a record
    that is gone at commit (the foreign keys are checked then) is one a colleague deleted while the
    write waited for it: a claim citing a source deleted at that moment, which its `lock_source`
    waited for. Saved again, the write is refused naming the link, as a moment later."""
    cause = error.__cause__
    return isinstance(cause, psycopg.errors.ForeignKeyViolation) or (
        isinstance(cause, psycopg.Error) and (cause.sqlstate or "").startswith("40")
    )


class WriteConflictMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        # A read wrote nothing to lose; on a replica, a query cancelled for conflicting with recovery
        # is class 40 too, and is answered again from the primary (tracker.replicas), not as a 409.
        if request.method in SAFE_METHODS:
            return None
        if not is_write_conflict(exception):
            return None
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": MESSAGE}, status=409)
        context = {**admin.site.each_context(request), "title": "Not saved", "message": MESSAGE}
        return TemplateResponse(request, "admin/write_conflict.html", context, status=409)
