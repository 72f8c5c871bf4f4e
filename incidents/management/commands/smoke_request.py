from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from incidents.management.arguments import site_path


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
        response = Client().get(path, follow=True)
        if response.status_code != 200:
            raise CommandError(f"GET {path} answered {response.status_code}.")
        self.stdout.write(self.style.SUCCESS(f"GET {path} answered 200."))
