"""The URL converters of the incidents' addresses, public pages and API alike."""

from django.urls import register_converter


class PublicIdConverter:
    """An incident's public id (`INC-000042`), and nothing else: any other address is a 404 before
    a view looks it up (a NUL in one, which PostgreSQL's text cannot hold, was a 500). ASCII digits
    only (`\\d` also matches "٣"). The API's incident routes take the same (`lookup_value_regex`)."""

    regex = "INC-[0-9]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PublicIdConverter, "public_id")
