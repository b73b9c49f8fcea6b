from django.core.management.base import BaseCommand

from stores.errors import catalogue_markdown


class Command(BaseCommand):
    help = "Print the error-code catalogue as Markdown (docs/ERRORS.md is this output)."

    def handle(self, *args, **options):
        self.stdout.write(catalogue_markdown(), ending="")
