"""Files in a request's body only where a view takes them, and no larger than it takes.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) bounds a multipart body's form fields, not its files:
a file part of any size, posted to any door that reads its form (a sign-in, the token request, and
any page at all once the client sends a csrftoken cookie, as CSRF's check then reads the form), was
streamed to a temporary file on the server's disk before the view answered. BoundedUploadHandler
comes first in FILE_UPLOAD_HANDLERS and refuses, with a 400 naming what is wrong:

- at an address no view answers (a 404), the whole body, left unread;
- a multipart body whose Content-Length is over 2.5 MB plus what the address's view takes, before
  reading any of it;
- a file part where the view takes none (every view but those marked with `takes_file`), or from
  someone the view would refuse (`takes_file`'s `may_upload`: an anonymous visitor with a csrftoken
  cookie of their own, or an account without the view's permission), or in a field it does not
  read, or a second one, before a byte of it is written; the body of such a request is bounded as
  at an address that takes no file;
- a file larger than the view's bound, at the chunk that crosses it, before it is all written.

A file kept on disk (over FILE_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) that finds no room there is refused
by RoomCheckedTemporaryFileUploadHandler with a 503 saying so, its part written removed.
"""

import contextlib
import errno
import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _

# The errors of a file's write that room may end: the disk (or the quota, or the file size a process
# may write) is full. Uploads and downloads are deleted once done, so room comes back as those under
# way end (a whole export takes under 20 s to send, bench/README.md "Load test").
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NO_ROOM_RETRY_SECONDS = 60

logger = logging.getLogger(__name__)


class UploadRefused(MultiPartParserError):
    """A body or a file part refused (Django answers a MultiPartParserError with handler400, and
    DRF with a 400 of its own); its message names what was wrong, and no value the request sent."""


class UploadNoRoom(UploadRefused):
    """A file part the server had no room to write: `tracker.bad_requests` answers it 503, with when
    to come back, as the request itself was fine."""


def takes_file(field_name: str, max_bytes: Callable[[], int], may_upload: Callable[[HttpRequest], bool]):
    """Mark a view as taking one uploaded file, in `field_name`, of at most `max_bytes()` bytes
    (read at each request, so that the setting it comes from may change), from a request for which
    `may_upload(request)` is true: the view's own permission check, so that a file it would refuse
    is refused before it is written (the handlers run when the form is first read, by CSRF's check,
    before the view, or the admin's sign-in redirect, answers)."""

    def mark(view):
        @functools.wraps(view)
        def taking(*args, **kwargs):
            return view(*args, **kwargs)

        taking.takes_file = (field_name, max_bytes, may_upload)
        return taking

    return mark


NO_VIEW = object()


def _taken_file(request) -> tuple[str, int] | object | None:
    """The field and the bound of the file the view at the request's address takes from this
    request, None if it takes none (or none from whoever sends it), NO_VIEW if no view answers there."""
    if request is None:
        return None
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return NO_VIEW
    taken = getattr(match.func, "takes_file", None)
    if taken is None:
        return None
    field_name, max_bytes, may_upload = taken
    if not may_upload(request):
        return None
    return field_name, max_bytes()


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.3g}"


class BoundedUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.taken = _taken_file(request)
        self.files_seen = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if self.taken is NO_VIEW:
            # The answer is a 404, whose page (Django's, behind requires_csrf_token) reads the form,
            # where an error would be a 500: an empty form, and none of the body read.
            return QueryDict(encoding=encoding), MultiValueDict()
        allowed = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + (self.taken[1] if self.taken else 0)
        if content_length > allowed:
            raise UploadRefused(
                _("The request's body is larger than %(megabytes)s MB.") % {"megabytes": _megabytes(allowed)}
            )
        return None  # the other handlers read it

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        if self.taken is None:
            raise UploadRefused(_("This address takes no file."))
        if field_name != self.taken[0] or self.files_seen:
            raise UploadRefused(_("This address takes one file, in the field “%(field)s”.") % {"field": self.taken[0]})
        self.files_seen += 1
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)

    def receive_data_chunk(self, raw_data, start):
        limit = self.taken[1]
        if start + len(raw_data) > limit:
            raise UploadRefused(
                _("The file is larger than %(bytes)s bytes, the largest this address takes.") % {"bytes": f"{limit:,}"}
            )
        return raw_data  # to the next handler, which keeps it

    def file_complete(self, file_size):
        return None  # the next handler's file


class RoomCheckedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's handler of files kept on disk (FILE_UPLOAD_TEMP_DIR, else the system's temporary
    directory), which refuses a file that finds no room there (UploadNoRoom) and removes what it
    wrote of it. Django's own let the OSError through: the analyst importing a CSV got the bare
    "Server error" page, which names no cause and says that nothing they did caused it."""

    def new_file(self, *args, **kwargs):
        with self._room_checked():
            super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        with self._room_checked():
            return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        # Buffered: the last write reaches the disk here.
        with self._room_checked():
            return super().file_complete(file_size)

    @contextlib.contextmanager
    def _room_checked(self):
        try:
            yield
        except OSError as error:
            if error.errno not in NO_ROOM_ERRNOS:
                raise
            if getattr(self, "file", None) is not None:
                with contextlib.suppress(OSError):  # its buffer, which has no room either
                    self.file.close()  # and so deleted
            logger.error("An uploaded file could not be written to the temporary directory: %s", error)
            raise UploadNoRoom(
                _("The server has no room to receive the file just now. Try again in %(seconds)d seconds.")
                % {"seconds": NO_ROOM_RETRY_SECONDS}
            ) from None
