"""Re-encrypt every stored TikTok Shop credential with the newest key, or check that all of them decrypt.

Key rotation (docs/CONNECTOR.md): put the new Fernet key first in ``CREDENTIALS_KEYS`` (keep the old one after
it) on every process, run ``manage.py rotate_credentials``, check with ``--check`` under the new key alone, then
remove the old key. Values are never printed: failures name the model, the row and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aftersales.tiktok import crypto
from aftersales.tiktok.crypto import Secret
from aftersales.tiktok.models import PartnerApp, SellerAuthorization
from stores.errors import AppError

TARGETS = ((PartnerApp, ("app_secret",)), (SellerAuthorization, ("access_token", "refresh_token")))


@dataclass
class Tally:
    rotated: int = 0
    verified: int = 0
    empty: int = 0
    failures: list[str] = field(default_factory=list)


def _batches(model, size: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(model.objects.unscoped().filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def rotate_model(model, fields: tuple[str, ...], batch_size: int) -> Tally:
    """Each batch in its own transaction, rows locked so a concurrent token refresh is not overwritten."""
    tally = Tally()
    for ids in _batches(model, batch_size):
        with transaction.atomic():
            rows = (model.objects.unscoped().select_for_update(of=("self",)).filter(pk__in=ids)
                    .only("pk", *fields).order_by("pk"))
            for row in rows:
                changes: dict[str, Secret] = {}
                for name in fields:
                    secret: Secret = getattr(row, name)
                    if not secret:
                        tally.empty += 1
                        continue
                    try:
                        changes[name] = Secret(ciphertext=crypto.rotate(secret.ciphertext()))
                    except AppError as exc:
                        tally.failures.append(f"{model.__name__} pk={row.pk} {name}: {exc.code}")
                if changes:
                    # update(): no save() side effects (updated_at stays: the credential did not change).
                    model.objects.unscoped().filter(pk=row.pk).update(**changes)
                    tally.rotated += len(changes)
    return tally


def check_model(model, fields: tuple[str, ...], batch_size: int) -> Tally:
    tally = Tally()
    for ids in _batches(model, batch_size):
        for row in model.objects.unscoped().filter(pk__in=ids).only("pk", *fields).order_by("pk"):
            for name in fields:
                secret: Secret = getattr(row, name)
                if not secret:
                    tally.empty += 1
                    continue
                try:
                    secret.reveal()
                except AppError as exc:
                    tally.failures.append(f"{model.__name__} pk={row.pk} {name}: {exc.code}")
                else:
                    tally.verified += 1
    return tally


class Command(BaseCommand):
    help = ("Re-encrypt every partner-app secret and seller token with the first key of CREDENTIALS_KEYS "
            "(--check: only verify that every value decrypts; exit status 1 otherwise).")

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Only check that every stored value decrypts.")
        parser.add_argument("--batch-size", type=int, default=200, help="Rows per transaction (default 200).")

    def handle(self, *args, check: bool = False, batch_size: int = 200, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        failures: list[str] = []
        for model, fields in TARGETS:
            if check:
                tally = check_model(model, fields, batch_size)
                self.stdout.write(f"{model.__name__}: {tally.verified} decrypt, {tally.empty} empty, "
                                  f"{len(tally.failures)} failed")
            else:
                tally = rotate_model(model, fields, batch_size)
                self.stdout.write(f"{model.__name__}: {tally.rotated} re-encrypted, {tally.empty} empty, "
                                  f"{len(tally.failures)} failed")
            failures += tally.failures
        if failures:
            for line in failures:
                self.stderr.write(line)
            raise CommandError(f"{len(failures)} stored value(s) cannot be decrypted with CREDENTIALS_KEYS "
                               "(put the key they were encrypted with back into the list)", returncode=1)
        self.stdout.write(self.style.SUCCESS("All credentials decrypt." if check else
                                             "All credentials are encrypted with the newest key."))
