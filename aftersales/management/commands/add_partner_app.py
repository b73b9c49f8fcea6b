"""Register (or update) an agency's TikTok Shop partner app from the command line — handy for demos and setup.

The app secret is never an argument (it would show in the process list and the shell history): it is read
from the environment variable named by ``--secret-env`` (default ``TTS_APP_SECRET``) or typed at a prompt.
"""

from __future__ import annotations

import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from aftersales.tiktok import connect
from aftersales.tiktok.models import API_BASE, AUTH_BASE, AUTHORIZE_URL
from stores.errors import AppError
from stores.models import Agency


class Command(BaseCommand):
    help = "Add or update a TikTok Shop partner app of an agency (the secret comes from the environment or a prompt)."

    def add_arguments(self, parser):
        parser.add_argument("--agency", required=True, help="The agency's slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--app-key", required=True)
        parser.add_argument("--service-id", default="", help="Partner Center service id (authorisation link).")
        parser.add_argument("--api-base-url", default=API_BASE)
        parser.add_argument("--auth-base-url", default=AUTH_BASE)
        parser.add_argument("--authorize-url", default=AUTHORIZE_URL)
        parser.add_argument("--secret-env", default="TTS_APP_SECRET",
                            help="Environment variable holding the app secret (default TTS_APP_SECRET).")

    def handle(self, *args, **o):
        agency = Agency.objects.filter(slug=o["agency"]).first()
        if agency is None:
            raise CommandError(f"no agency with slug {o['agency']!r}")
        secret = os.environ.get(o["secret_env"], "")
        if not secret and sys.stdin.isatty():
            secret = getpass.getpass("App secret (input hidden, empty keeps the stored one): ")
        try:
            app, created = connect.save_partner_app(
                agency=agency, name=o["name"], app_key=o["app_key"], app_secret=secret.strip(),
                service_id=o["service_id"], api_base_url=o["api_base_url"], auth_base_url=o["auth_base_url"],
                authorize_url=o["authorize_url"])
        except AppError as exc:
            raise CommandError(f"{exc.code}: {exc.detail or exc.error.message}") from None
        self.stdout.write(f"{'Created' if created else 'Updated'} partner app {app.public_id} ({app.app_key}); "
                          f"secret {'set' if app.app_secret else 'NOT set'}")
        self.stdout.write(f"Redirect URL to set in Partner Center: <your host>{reverse('tiktok:callback')}")
        self.stdout.write(f"Webhook URL: <your host>{reverse('tiktok:tiktok_webhook', args=[app.public_id])}")
