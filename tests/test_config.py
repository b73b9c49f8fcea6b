"""Configuration: one-line errors, production hardening, request ids, pinned dependencies."""

import logging
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, env_overrides=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_overrides or {})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("overrides", "drop", "variable"), [
    ({"DATABASE_URL": "mysql://root@localhost/x"}, (), "DATABASE_URL"),
    ({"DATABASE_URL": "postgres://localhost:notaport/x"}, (), "DATABASE_URL"),
    ({}, ("DATABASE_URL",), "DATABASE_URL"),
    ({"DEBUG": "maybe"}, (), "DEBUG"),
    ({"CELERY_BROKER_URL": "kafka://x"}, (), "CELERY_BROKER_URL"),
    ({"AXES_FAILURE_LIMIT": "many"}, (), "AXES_FAILURE_LIMIT"),
])
def test_bad_configuration_fails_with_one_clear_line(overrides, drop, variable):
    result = manage("check", env_overrides=overrides, drop=drop)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ") and variable in lines[0]
    assert "Traceback" not in result.stderr


def test_production_settings_pass_check_deploy():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env_overrides={"DJANGO_SETTINGS_MODULE": "config.settings.production", "DEBUG": "0",
                       "SECRET_KEY": "p" * 20 + "r0dUct10n-k3y-Wit4-ENOUGH-entropy-xx" + "z" * 10,
                       "ALLOWED_HOSTS": "tower.example.com",
                       "CREDENTIALS_KEYS": "dGhpcy1pcy1hLXRlc3QtZmVybmV0LWtleS0zMi1ieXQ="},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_credential_keys():
    result = manage("check", env_overrides={"DJANGO_SETTINGS_MODULE": "config.settings.production", "DEBUG": "0",
                                            "SECRET_KEY": "p" * 20 + "r0dUct10n-k3y-Wit4-ENOUGH-entropy-xx" + "z" * 10,
                                            "ALLOWED_HOSTS": "tower.example.com", "CREDENTIALS_KEYS": ""})
    assert result.returncode != 0
    assert "CREDENTIALS_KEYS" in result.stdout + result.stderr


def test_production_refuses_a_weak_secret_key():
    result = manage("check", env_overrides={"DJANGO_SETTINGS_MODULE": "config.settings.production",
                                            "SECRET_KEY": "short", "ALLOWED_HOSTS": "x.example"})
    assert result.returncode == 2 and "SECRET_KEY" in result.stderr


def test_request_id_header_is_generated_and_kept(client, db):
    generated = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated["X-Request-ID"])
    kept = client.get("/healthz", HTTP_X_REQUEST_ID="erp-batch-0001")
    assert kept["X-Request-ID"] == "erp-batch-0001"
    unsafe = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert unsafe["X-Request-ID"] != "bad id\nwith newline"


def test_request_id_reaches_log_lines(rf):
    from config.middleware import RequestIdLogFilter, RequestIdMiddleware

    seen = []

    def view(request):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
        RequestIdLogFilter().filter(record)
        seen.append(record.request_id)
        from django.http import HttpResponse
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(rf.get("/", HTTP_X_REQUEST_ID="trace-12345678"))
    assert seen == ["trace-12345678"] == [response["X-Request-ID"]]


def test_requirements_lock_pins_every_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version.strip()
    for requirement in declared:
        name, version = requirement.split("==")
        name = name.split("[")[0].lower().replace("_", "-")
        assert lock.get(name) == version, f"{name} {version} is not pinned in requirements.lock"


def test_python_version_file_selects_312():
    assert (ROOT / ".python-version").read_text().startswith("3.12")
    assert sys.version_info >= (3, 12)
