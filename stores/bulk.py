"""Set-based writes for hot paths: one statement per table whatever the row count, columns sent as arrays.

Django's ``bulk_create`` renders one placeholder per value (a 500-row batch of operation-log rows is 7,500
parameters, compiled in Python every time). Here each column travels as one array parameter of
``INSERT … SELECT FROM unnest(…)`` / ``UPDATE … FROM unnest(…)``: the SQL text is fixed, and the statement is
sent with server-side binding in binary, so psycopg does not quote thousands of values into the SQL text.
Values go through the same field methods the ORM uses where they differ from what psycopg sends natively
(JSON, naive times, ``auto_now``), so rows are identical to the ORM's. Array columns are refused (``unnest``
would flatten them). Statements are recorded in ``connection.queries`` like any other, so query-count
assertions still see them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import psycopg
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models

# Values psycopg adapts exactly as the ORM writes them (Decimal, UUID, aware datetimes, str, int, bool).
PLAIN = (models.CharField, models.TextField, models.IntegerField, models.BigIntegerField, models.BooleanField,
         models.DecimalField, models.UUIDField, models.ForeignKey, models.PositiveIntegerField)
_MISSING = object()


def insert_rows(model: type[models.Model], rows: Sequence[models.Model | Mapping],
                returning: Sequence[str] = ()) -> list[tuple]:
    """Insert unsaved instances (or dicts keyed by attribute name; missing keys take the field default).

    Returns the ``returning`` columns of each new row. Their order is not promised: return a natural key
    alongside the id to match rows up."""
    if not rows:
        return []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if any(isinstance(f, ArrayField) for f in fields):
        raise TypeError(f"{model.__name__}: array columns cannot be inserted through unnest")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    casts = ", ".join(f"%b::{f.db_type(connection)}[]" for f in fields)
    # Names and types come from the model; every value is a bound parameter.
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT * FROM unnest({casts})"  # noqa: S608
    if returning:
        sql += " RETURNING " + ", ".join(quote(model._meta.get_field(name).column) for name in returning)
    return execute(sql, [_column(f, rows) for f in fields], fetch=bool(returning))


def update_rows(model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write the named fields of saved instances, each row its own values, in one ``UPDATE … FROM unnest``.

    What ``save(update_fields=…)`` writes row by row (``auto_now`` fields named here are set to now, on the
    instances too), as one statement: the SQL text depends only on the model and the field names."""
    if not rows:
        return
    targets = [model._meta.get_field(name) for name in fields]
    if any(isinstance(f, ArrayField) for f in targets):
        raise TypeError(f"{model.__name__}: array columns cannot be updated through unnest")
    pk = model._meta.pk
    quote = connection.ops.quote_name
    names = [quote(f.column) for f in (pk, *targets)]
    casts = ", ".join(f"%b::{f.db_type(connection) if f is not pk else pk.rel_db_type(connection)}[]"
                      for f in (pk, *targets))
    sets = ", ".join(f"{name} = v.{name}" for name in names[1:])
    # Names and types come from the model; every value is a bound parameter.
    sql = (f"UPDATE {quote(model._meta.db_table)} AS t SET {sets} FROM unnest({casts}) "  # noqa: S608
           f"AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}")
    execute(sql, [[row.pk for row in rows], *(_column(f, rows) for f in targets)])


def execute(sql: str, params: Sequence, *, fetch: bool = False) -> list[tuple]:
    """Run one statement with server-side binding on Django's connection and transaction (use ``%b``
    placeholders: binary parameters, no quoting of each array element). Errors come as Django's (IntegrityError,
    DataError, …), as from the ORM."""
    connection.ensure_connection()
    start = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        result = cursor.fetchall() if fetch else []
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})
    return result


def _column(field: models.Field, rows: Sequence[models.Model | Mapping]) -> list:
    name = field.attname
    if rows and isinstance(rows[0], Mapping):
        values = [row.get(name, _MISSING) for row in rows]
        if any(v is _MISSING for v in values):
            values = [field.get_default() if v is _MISSING else v for v in values]
        holders = None
    else:
        values, holders = None, rows
    auto = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    if holders is not None and (auto or not isinstance(field, (*PLAIN, models.DateTimeField))):
        return [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in holders]
    if values is None:
        values = [getattr(obj, name) for obj in holders]
    if auto:
        from django.utils import timezone

        now = timezone.now()
        values = [now if v is None else v for v in values]
    if isinstance(field, models.DateTimeField):
        if any(v is not None and v.tzinfo is None for v in values):  # naive: let the field convert and warn
            return [field.get_db_prep_save(v, connection) for v in values]
        return values
    if isinstance(field, (models.CharField, models.TextField)):  # lazy strings, choices members → plain str
        return [v if v is None or type(v) is str else str(v) for v in values]
    if isinstance(field, (models.DecimalField, models.UUIDField)):  # one Python type per array (binary)
        return [field.to_python(v) for v in values]
    if isinstance(field, PLAIN):
        return values
    return [field.get_db_prep_save(v, connection) for v in values]
