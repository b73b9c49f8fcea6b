"""``./dev run | test | manage``: one entry for a newcomer's machine and for CI.

With no DATABASE_URL, an embedded PostgreSQL 16 (the ``pgserver`` package) is started with its
data under ``var/pgdata`` and reused on the next run. With no CELERY_BROKER_URL, settings fall
back to kombu's SQLAlchemy transport on that same Postgres, so nothing but Python is needed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable
DB_NAME = "aftersales"


def _embedded_database(stop_on_exit: bool) -> str:
    """Start (or reuse) the embedded Postgres and return a DATABASE_URL for it."""
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver

    VAR.mkdir(exist_ok=True)
    datadir = VAR / "pgdata"
    print(f"· embedded PostgreSQL in {datadir}", flush=True)
    server = pgserver.get_server(datadir, cleanup_mode="stop" if stop_on_exit else None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")  # noqa: S608 (constant)
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DB_NAME};")
    return f"postgresql://postgres@/{DB_NAME}?host={datadir}"


def _secret_key() -> str:
    VAR.mkdir(exist_ok=True)
    path = VAR / "secret_key"
    if not path.exists():
        # Created 0600 from the first byte (write-then-chmod would leave it readable for a moment).
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def prepare(*, stop_on_exit: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = _embedded_database(stop_on_exit)
    env.setdefault("SECRET_KEY", _secret_key())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def manage(env: dict[str, str], *args: str) -> int:
    return subprocess.call([PY, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT)


def cmd_manage(args: list[str]) -> int:
    env = prepare()
    env.setdefault("DEBUG", "1")
    return manage(env, *args)


CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium for the browser tests (tests/browser), and a small CJK font so that their
# screenshots of the Chinese pages show characters rather than empty boxes.
BROWSER_PACKAGES = ["chromium", "fonts-wqy-microhei"]


def _ensure_chromium() -> bool:
    """The browser tests run Debian's Chromium (Playwright never downloads one). As root with apt-get,
    install it; otherwise say how, and the test run stops before it starts."""
    if CHROMIUM.exists():
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        print(f"· installing Debian's Chromium for the browser tests: apt-get install -y {' '.join(BROWSER_PACKAGES)}",
              flush=True)
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", *BROWSER_PACKAGES]
        if subprocess.call(install, env=apt_env):  # a fresh machine may have no package lists yet
            subprocess.call(["apt-get", "update"], env=apt_env)
            subprocess.call(install, env=apt_env)
        if CHROMIUM.exists():
            return True
    print(f"✗ the browser tests (tests/browser) need Chromium at {CHROMIUM}: "
          f"install it with `sudo apt-get install -y {' '.join(BROWSER_PACKAGES)}` (Debian/Ubuntu)",
          file=sys.stderr, flush=True)
    return False


def cmd_test(args: list[str]) -> int:
    env = prepare()
    # DJANGO_ALLOW_ASYNC_UNSAFE is deliberately not exported: tests/browser/conftest.py sets it around
    # each browser test only (exported, it fails tests/test_config.py's `check --deploy`: async.E001).
    if not _ensure_chromium():
        return 1
    print("· ruff check", flush=True)
    rc = subprocess.call([PY, "-m", "ruff", "check", "."], cwd=ROOT, env=env)
    if rc:
        return rc
    print("· pytest", flush=True)
    return subprocess.call([PY, "-m", "pytest", *args], cwd=ROOT, env=env)


def cmd_run(args: list[str]) -> int:
    env = prepare(stop_on_exit=True)
    env.setdefault("DEBUG", "1")
    port = env.get("PORT", "8000")
    for step in (["migrate", "--no-input"], ["seed_demo"]):
        rc = manage(env, *step)
        if rc:
            print(f"✗ manage.py {' '.join(step)} failed (exit {rc})", file=sys.stderr)
            return rc
    children = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [PY, "-m", "celery", "-A", "config", "worker", "-l", "info", "--concurrency", "2",
                   "--without-gossip", "--without-mingle"],
        "beat": [PY, "-m", "celery", "-A", "config", "beat", "-l", "info",
                 "--schedule", str(VAR / "celerybeat-schedule")],
    }
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
             for name, cmd in children.items()}
    print(f"\n✓ Up on http://127.0.0.1:{port}/  (admin: /admin/, API docs: /api/docs/)", flush=True)
    print("  Demo logins (password demo-pass-2026): demo-owner, demo-agent, demo-viewer", flush=True)
    print("  Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def stop(*_sig):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    rc = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"✗ {name} exited with {proc.returncode}; stopping the rest", file=sys.stderr)
                rc = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("· stopped", flush=True)
    return rc


def cmd_bench(args: list[str]) -> int:
    """Run bench/<name>.py with the same environment (it makes and drops its own <database>_bench)."""
    names = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in {"__init__", "harness"})
    if not args or args[0] not in names:
        print(f"usage: ./dev bench <{'|'.join(names)}> [options]", file=sys.stderr)
        return 2
    env = prepare()
    return subprocess.call([PY, str(ROOT / "bench" / f"{args[0]}.py"), *args[1:]], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    commands = {"run": cmd_run, "test": cmd_test, "manage": cmd_manage, "bench": cmd_bench}
    if not argv or argv[0] not in commands:
        print("usage: ./dev run | ./dev test [pytest args] | ./dev manage <args> | ./dev bench <name> [options]",
              file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
