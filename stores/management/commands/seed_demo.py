from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify
from django.utils.translation import gettext as _

from stores.demo import seed_agency


class Command(BaseCommand):
    help = "Create (or refresh) a demo agency with 12 stores over the 11 markets and three logins."

    def add_arguments(self, parser):
        parser.add_argument("--agency", default="demo", help="agency slug (default: demo)")

    def handle(self, *args, agency, **options):
        slug = slugify(agency)
        if not slug or slug != agency:
            raise CommandError(_("--agency must be a slug (lowercase letters, digits, hyphens)."))
        logins = seed_agency(slug)
        self.stdout.write(_("Demo agency “%(name)s” is ready.") % {"name": logins.agency.name})
        for username in logins.usernames:
            self.stdout.write(f"  {username} / {logins.password}")
