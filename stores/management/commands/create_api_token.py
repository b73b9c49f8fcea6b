from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from stores.errors import AppError
from stores.services import create_api_token


class Command(BaseCommand):
    help = "Create an API token for a user and print the key, alone on the last line (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label to recognise the token by")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(_("No user named %(name)s.") % {"name": username})
        try:
            token, key = create_api_token(user=user, name=name)
        except AppError as exc:
            raise CommandError(f"{exc.code}: {exc.error.message}") from None
        self.stderr.write(_("Token %(prefix)s… created for %(user)s. Keep the key: it is not shown again.")
                          % {"prefix": token.prefix, "user": username})
        self.stdout.write(key)
