"""What is answered to a signed-in reader is kept by no cache: `Cache-Control: private, no-store`.

A signed-in reader may be shown what the public is not: confidential incidents and sources, drafts,
a sensitive place's exact coordinates, on the public pages, the GeoJSON downloads and the API alike.
`Vary: Cookie` keeps a cache that follows it from giving one session's answer to another, but not
the browser's own cache, which keeps the page on disk after sign-out, nor a cache in front that
ignores Vary (most CDNs but for Accept-Encoding). This says it of every answer to a signed-in
reader whose view did not say it is public (a release, the same for everyone, keeps its `public,
immutable`), added to what the view said: a merged incident's redirect says `no-cache` to every
reader, and to one with Confidential access it names a confidential survivor. The API's tokens
are counted too: DRF sets the request's user once it has authenticated one.
"""

from django.utils.cache import add_never_cache_headers
from django.utils.http import split_header_value


class SignedInAnswersNotStoredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not _said_public(response):
            add_never_cache_headers(response)
        return response


def _said_public(response) -> bool:
    directives = split_header_value(response.get("Cache-Control", ""))
    return "public" in {directive.split("=", 1)[0].strip().lower() for directive in directives}
