from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from incidents.management.arguments import site_path


def site_host() -> str:
    """A host name this site answers to. The test client's own, `testserver`, is allowed only by
    the default DJANGO_ALLOWED_HOSTS: on a server every request answered 400 (DisallowedHost)."""
    for allowed in settings.ALLOWED_HOSTS:
        # `.example.org` allows example.org and its subdomains; `*` allows any name.
        name = allowed.lstrip(".")
        if name and name != "*":
            return name
    return "localhost"


class Command(BaseCommand):
    help = "Send one request through the whole stack (URLs, views, database) and fail unless it answers 200."

    def add_arguments(self, parser):
        parser.add_argument(
            "path",
            nargs="?",
            type=site_path,
            default="/admin/login/",
            help="The page to ask for (default: /admin/login/).",
        )

    def handle(self, *args, path, **options):
        # Over HTTPS, as the TLS proxy in front of a server asks (DJANGO_SECURE_SSL_REDIRECT would
        # otherwise answer with a redirect first).
        client = Client(headers={"host": site_host()})
        response = client.get(path, follow=True, secure=settings.SECURE_SSL_REDIRECT)
        if response.status_code != 200:
            raise CommandError(f"GET {path} answered {response.status_code}.")
        self.stdout.write(self.style.SUCCESS(f"GET {path} answered 200."))
