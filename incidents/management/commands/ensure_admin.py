import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.management.arguments import web_address


class Command(BaseCommand):
    help = (
        "Make sure an administrator account exists. The first time, create it with a random password and "
        "print it once; afterwards only say how to log in. Never a fixed default password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin", help="The administrator's username (default: admin).")
        parser.add_argument(
            "--url",
            type=web_address,
            default="http://127.0.0.1:8000/admin/",
            help="The admin's address, printed as where to log in (default: http://127.0.0.1:8000/admin/); "
            "on a server, its public https://…/admin/.",
        )

    def handle(self, *args, username, url, **options):
        User = get_user_model()
        existing = User.objects.filter(username=username).first()
        if existing is not None and not (existing.is_superuser and existing.is_staff and existing.is_active):
            # Told to log in there, they would find an account without the admin's rights, or (a
            # superuser without Staff status) one the admin's login refuses.
            raise CommandError(
                f"--username: {username!r} exists but is not an active administrator; give it the rights in the "
                "admin (Users: active, staff status, superuser status), or choose another name."
            )
        if existing is not None:
            self.stdout.write(
                f"Log in at {url} as {username!r} with the password printed when the account was created "
                f"(forgot it? `python manage.py changepassword {username}`)."
            )
            return
        try:
            # The admin's own rules for a username (not empty, at most 150 characters, letters, digits
            # and @.+-_): create_superuser checks none of them, and failed on an empty or long one
            # with a traceback.
            User._meta.get_field(User.USERNAME_FIELD).clean(username, None)
        except ValidationError as error:
            raise CommandError(f"--username: {' '.join(error.messages)}") from None
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Created administrator {username!r}."))
        self.stdout.write(f"Log in at {url} as {username!r} with password: {password}")
        # With the name: typed alone, changepassword changes the account named as the OS user.
        self.stdout.write(
            f"This password is shown only once; change it with `python manage.py changepassword {username}`."
        )
        if settings.REQUIRE_2FA:
            site = url.removesuffix("/admin/")
            self.stdout.write(
                f"Its authenticator app is set up with a setup link: `python manage.py setup_link {username} "
                f"--url {site}`."
            )
