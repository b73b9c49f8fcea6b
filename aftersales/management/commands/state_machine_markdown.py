from django.core.management.base import BaseCommand

from aftersales.states import table_markdown


class Command(BaseCommand):
    help = "Print the after-sales state machine as Markdown (docs/STATE_MACHINE.md is this output)."

    def handle(self, *args, **options):
        self.stdout.write(table_markdown(), ending="")
