from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.services import second_factor_reset, setup_link_create
from accounts.views import setup_link_path
from incidents.management.arguments import web_address


class Command(BaseCommand):
    help = (
        "Print a setup link for a staff member's first authenticator app (the admin's users list makes them "
        "too): for the first administrator, or, with --delete-devices, one who lost the phone "
        "(recovery codes set up no new app). It replaces the account's earlier links."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--url",
            type=web_address,
            default="http://127.0.0.1:8000",
            help="The tracker's address, which the link starts with (default: http://127.0.0.1:8000); "
            "the admin's address (…/admin/, as ensure_admin takes) works too.",
        )
        parser.add_argument(
            "--delete-devices",
            action="store_true",
            help="First delete the account's authenticator app and recovery codes (lost with the phone).",
        )

    def handle(self, *args, username, url, delete_devices, **options):
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user is called {username!r}.") from None
        try:
            # Both or neither: a refused link leaves the devices as they were.
            with transaction.atomic():
                if delete_devices:
                    second_factor_reset(user=user)
                link, key = setup_link_create(user=user)
        except ValidationError as refusal:
            raise CommandError(" ".join(refusal.messages)) from None
        # ensure_admin's --url is the admin's address: given here, it made a link under /admin/ that 404s.
        site = url.rstrip("/").removesuffix("/admin")
        self.stdout.write(f"{site}{setup_link_path(key)}")
        until = f"{link.expires_at:%Y-%m-%d %H:%M} UTC"
        self.stdout.write(f"Give it to {username} apart from their password. It works once, until {until}.")
