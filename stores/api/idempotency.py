"""``Idempotency-Key`` for writes that move money (shared/API.md): a retried request never acts twice.

Usage: decorate a DRF handler method with ``@idempotent`` (it sits under ``@extend_schema``; add
``IDEMPOTENCY_PARAMETER`` to the schema's parameters). A request without the header runs as before.

With the header, per user (another user's same key is independent):

- **First use**: the handler runs inside one database transaction that also inserts the key's row (user, key,
  method, path, SHA-256 of the body) and stores the response (status + JSON body). The effect and its recorded
  result commit together, or roll back together: there is no moment where the money moved but the result is
  not on record, even if the process dies.
- **Same key, same method, path and body** → the stored response is replayed exactly (status and JSON body, the
  original request id included) with the header ``Idempotent-Replayed: true``. The handler does not run.
- **Same key, different body, method or path** → 409 ``ERR_IDEMPOTENCY_MISMATCH``; nothing runs.
- **Concurrent duplicates wait**: the second request's insert of the key blocks on the first's uncommitted row
  (Postgres' unique index), so exactly one executes; when the first commits the waiter replays its result, when it
  rolls back (a 5xx) the waiter executes itself. A waiter gives up after ``IDEMPOTENCY_WAIT_SECONDS`` (default 30)
  with 409 ``ERR_IDEMPOTENCY_IN_PROGRESS`` and ``Retry-After``; nothing ran for it.
- **What is stored**: every response of a request that reached the handler with a status below 500 — success,
  and refusals such as ERR_STATE_001, ERR_PERM_…, ERR_REFUND_… or ERR_VALIDATION (the refusal is in the operation
  log too; a retry with the same key answers the same, so the client must use a new key for a new attempt).
  A 5xx is never stored: its transaction is rolled back (effects included) and the key stays free for a retry.
  Requests refused before the handler (authentication, throttling, malformed JSON, a bad key) store nothing.
- **Body comparison**: the parsed body in a canonical JSON form (sorted keys, no insignificant whitespace), so the
  same fields in another order or spacing are the same body.
- **Expiry**: a key lives ``IDEMPOTENCY_TTL`` (24 h). An older row counts as absent and is replaced on reuse;
  every keyed request also deletes up to ``PURGE_BATCH`` expired rows of anyone (oldest first, ``SKIP LOCKED``),
  so the table stays bounded without a beat task. ``purge_expired()`` empties it on demand.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.renderers import JSONRenderer

from stores import errors
from stores.errors import AppError
from stores.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, no spaces
PURGE_BATCH = 100
LOCK_NOT_AVAILABLE = "55P03"  # Postgres: lock_timeout expired

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description=("Optional, 1–255 visible ASCII characters (a UUID is a good choice), scoped to the caller. The same "
                 "key with the same body returns the first result again (header `Idempotent-Replayed: true`) "
                 "instead of acting twice; with a different body → 409 ERR_IDEMPOTENCY_MISMATCH; while the first "
                 "request still runs a duplicate waits for it (409 ERR_IDEMPOTENCY_IN_PROGRESS after a while). "
                 "Results below 500 are kept for 24 hours; a 5xx leaves the key free."),
)
IDEMPOTENCY_CODES = ("ERR_IDEMPOTENCY_KEY_INVALID", "ERR_IDEMPOTENCY_MISMATCH", "ERR_IDEMPOTENCY_IN_PROGRESS")


def ttl() -> dt.timedelta:
    return getattr(settings, "IDEMPOTENCY_TTL", dt.timedelta(hours=24))


def wait_seconds() -> float:
    return float(getattr(settings, "IDEMPOTENCY_WAIT_SECONDS", 30))


def body_digest(data: Any) -> str:
    """SHA-256 of the parsed body in canonical JSON (sorted keys, compact)."""
    if hasattr(data, "lists"):  # a QueryDict (form bodies)
        data = {key: values for key, values in data.lists()}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def purge_expired(limit: int | None = None) -> int:
    """Delete expired keys (all of them, or the ``limit`` oldest not locked by someone else); returns how many."""
    cutoff = timezone.now() - ttl()
    if limit is None:
        return IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()[0]
    table = IdempotencyKey._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{table}" WHERE id IN (SELECT id FROM "{table}" WHERE created_at < %s '  # noqa: S608
            "ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)", [cutoff, limit])
        return cursor.rowcount


def _claim(user_id: int, key: str, method: str, path: str, digest: str) -> IdempotencyKey | None:
    """Inside the caller's transaction: take the key (None) or return the row someone completed with it.

    The insert waits for a concurrent holder of the same key (unique index) at most ``wait_seconds()``.
    """
    now = timezone.now()
    row = IdempotencyKey(user_id=user_id, key=key, method=method, path=path, body_sha256=digest, status=0,
                         response="", created_at=now)
    try:
        with transaction.atomic():  # a savepoint: a conflict or a timeout leaves the outer transaction usable
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('lock_timeout')")
                previous = cursor.fetchone()[0]
                wait_ms = max(1, int(wait_seconds() * 1000))  # 0 would mean "wait for ever"
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{wait_ms}ms"])
            IdempotencyKey.objects.filter(user_id=user_id, key=key, created_at__lt=now - ttl()).delete()
            row.save(force_insert=True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
        return None
    except IntegrityError:
        pass
    except OperationalError as exc:
        if getattr(getattr(exc, "__cause__", None), "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise AppError(errors.ERR_IDEMPOTENCY_IN_PROGRESS) from None
        raise
    return IdempotencyKey.objects.get(user_id=user_id, key=key)


def _replay(row: IdempotencyKey, method: str, path: str, digest: str) -> HttpResponse:
    if (row.method, row.path, row.body_sha256) != (method, path, digest):
        raise AppError(errors.ERR_IDEMPOTENCY_MISMATCH)
    return HttpResponse(row.response, status=row.status, content_type="application/json",
                        headers={REPLAYED_HEADER: "true"})


def _rendered(response) -> str:
    """The body as the API renders it (the one JSON renderer), byte for byte."""
    data = getattr(response, "data", None)
    return "" if data is None else JSONRenderer().render(data).decode()


def idempotent(handler):
    """Decorate a DRF view handler (``def post(self, request, ...)``) to honour ``Idempotency-Key``."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not KEY_RE.fullmatch(key):
            raise AppError(errors.ERR_IDEMPOTENCY_KEY_INVALID)
        method, path = request.method, request.path[:512]
        digest = body_digest(request.data)  # a malformed body is refused here, before anything is stored
        try:
            with transaction.atomic():
                row = _claim(request.user.pk, key, method, path, digest)
                if row is not None:
                    return _replay(row, method, path, digest)
                purge_expired(PURGE_BATCH)
                try:
                    response = handler(view, request, *args, **kwargs)
                except Exception as exc:  # rendered here so a refusal's response can be stored like a success
                    response = view.handle_exception(exc)
                if response.status_code >= 500:
                    transaction.set_rollback(True)  # effects and key go: the key stays free for a retry
                    return response
                IdempotencyKey.objects.filter(user_id=request.user.pk, key=key).update(
                    status=response.status_code, response=_rendered(response))
                return response
        except AppError as exc:
            if exc.error is not errors.ERR_IDEMPOTENCY_IN_PROGRESS:
                raise
            response = view.handle_exception(exc)
            response["Retry-After"] = "1"
            return response

    return wrapper
