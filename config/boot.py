"""Import the settings module early so a bad environment ends in one clear line."""

import importlib
import os
import sys

from config.env import ConfigError


def load_settings_or_exit() -> None:
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.base")
    try:
        importlib.import_module(module)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        raise SystemExit(2) from None
