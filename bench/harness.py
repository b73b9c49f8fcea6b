"""Shared parts of the benchmarks: a database of their own, COPY loading, timing, the results table.

A benchmark never touches the development or test data: it works in ``<database>_bench`` on the same server
(dropped and re-created at the start of each run), migrated from scratch.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(suffix: str = "_bench", *, fresh: bool = True) -> None:
    """Point Django at ``<name><suffix>`` (dropped and re-created unless ``fresh`` is False, which keeps a
    loaded database for another run), migrate it, and set Django up."""
    import psycopg

    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: run benchmarks with ./dev bench <name>")
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + suffix
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if fresh or not exists:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("ALLOW_INSECURE_KEY", "1")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django
    from django.core.management import call_command

    django.setup()
    import logging

    logging.disable(logging.WARNING)  # the sweep logs each batch; a benchmark measures, it does not narrate
    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"· database {name} migrated in {time.perf_counter() - t:.1f} s", flush=True)


def _libpq(url: str) -> str:
    """postgres://user@/db?host=/socket → a libpq URL psycopg accepts (it does; only the scheme matters)."""
    return url.replace("postgres://", "postgresql://", 1)


def copy_models(model, objects: Iterable, fields: list[str] | None = None, chunk: int = 20000) -> int:
    """Load unsaved model instances with COPY (the bulk path the benchmarks use instead of INSERTs).

    Values go through each field's ``get_db_prep_save``, so JSON, arrays, decimals and times are exactly what
    the ORM would write. Primary keys come from the sequence."""
    from django.db import connection

    concrete = [f for f in model._meta.concrete_fields if not f.primary_key]
    if fields is not None:
        concrete = [f for f in concrete if f.name in fields or f.attname in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in concrete)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no copy()
        with raw.copy(sql) as copy:
            for obj in objects:
                for field in concrete:
                    auto = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
                    if auto and getattr(obj, field.attname) is None:
                        setattr(obj, field.attname, _now())
                copy.write_row([field.get_db_prep_save(getattr(obj, field.attname), connection)
                                for field in concrete])
                count += 1
    return count


def _now():
    from django.utils import timezone

    return timezone.now()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def machine() -> str:
    cpus = os.cpu_count()
    try:
        mem = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1]) / 1024 / 1024
    except (OSError, StopIteration, ValueError):
        mem = 0
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return (f"{platform.machine()}, {cpus} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"PostgreSQL {pg}")


def table(rows: list[tuple[str, str, str, str, bool]]) -> str:
    """figure | goal | measured | ratio | pass — as a Markdown table."""
    out = ["| figure | goal | measured | ratio | pass |", "|---|---|---|---|---|"]
    out += [f"| {f} | {g} | {m} | {r} | {'✅' if ok else '❌'} |" for f, g, m, r, ok in rows]
    return "\n".join(out)


def reference_ms(loops: int = 2_000_000) -> float:
    """The host's speed right now: a fixed pure-Python loop, median of three, in ms (lower is faster).

    A shared virtual machine's speed drifts (this one ran the same loop in 1.75 s and 3.04 s a minute apart), so
    each step's figures are printed beside it: a slow figure with a slow reference is the host, not the code."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times)[1]
