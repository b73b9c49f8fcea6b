from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify
from django.utils.translation import gettext as _

from aftersales.demo import seed_order_volumes, seed_tickets
from aftersales.sla import seed_sla_demo
from logistics.demo import seed_dropoffs, seed_return_addresses, seed_return_parcels
from stores.demo import seed_agency


class Command(BaseCommand):
    help = ("Create (or refresh) a demo agency: 12 stores over the 11 markets, three logins, after-sales "
            "requests in every state (through the services, so with full logs), return addresses, tracked "
            "return parcels (some overdue for the 48 h scan watch) and a few hundred drop-off points.")

    def add_arguments(self, parser):
        parser.add_argument("--agency", default="demo", help="agency slug (default: demo)")
        parser.add_argument("--tickets", type=int, default=250, help="requests per store (default: 250)")

    def handle(self, *args, agency, tickets, **options):
        slug = slugify(agency)
        if not slug or slug != agency:
            raise CommandError(_("--agency must be a slug (lowercase letters, digits, hyphens)."))
        if not 0 <= tickets <= 100_000:
            raise CommandError(_("--tickets must be between 0 and 100000."))
        logins = seed_agency(slug)
        seed_return_addresses(logins.agency.pk)
        created = seed_tickets(logins.agency.pk, tickets)
        parcels = seed_return_parcels(logins.agency.pk)
        sla = seed_sla_demo(logins.agency.pk)
        seed_order_volumes(logins.agency.pk)
        seed_dropoffs()
        self.stdout.write(_("Demo agency “%(name)s” is ready.") % {"name": logins.agency.name})
        if created:
            self.stdout.write(_("%(count)d after-sales requests created.") % {"count": created})
        if parcels["registered"]:
            self.stdout.write(_("%(count)d return parcels tracked (%(overdue)d overdue for the scan watch).")
                              % {"count": parcels["registered"], "overdue": parcels["overdue"]})
        if sla.get("overdue") or sla.get("soon"):
            self.stdout.write(_("%(overdue)d requests past their deadline and %(soon)d due within minutes: the SLA "
                                "sweep handles them within a minute or two.") % sla)
        for username in logins.usernames:
            self.stdout.write(f"  {username} / {logins.password}")
