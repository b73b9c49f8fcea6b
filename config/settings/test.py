"""Tests: base settings with a fast password hasher (PBKDF2's cost is for attackers, not fixtures)."""

import os

# Tests never need a real secret; production settings still refuse to start without one.
os.environ.setdefault("ALLOW_INSECURE_KEY", "1")

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Uploaded evidence and labels made by tests go to a throw-away folder, never into var/media.
import tempfile  # noqa: E402

MEDIA_ROOT = tempfile.mkdtemp(prefix="tower-test-media-")

# Mail stays in memory (django.core.mail.outbox), also in a worker started inside a test.
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# The TikTok Shop emulator runs on the loopback interface.
TTS_ALLOWED_HOSTS = [*TTS_ALLOWED_HOSTS, "127.0.0.1", "localhost"]  # noqa: F405
