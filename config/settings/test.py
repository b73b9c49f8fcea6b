"""Tests: base settings with a fast password hasher (PBKDF2's cost is for attackers, not fixtures)."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
