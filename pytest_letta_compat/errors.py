"""User-facing errors and secret redaction.

Every problem a user can cause or meet (bad matrix, unknown version, a server that will
not start) is a ``LettaCompatError`` whose message is one readable paragraph: the pytest
layer and the CLI print it without a traceback.
"""

from __future__ import annotations

import re
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
# any scheme: a mistyped `postgresq://u:pw@h` or an `http://admin:pw@h` URL must not show its password
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(\S+)(@[^@\s]*)")  # to the last @
# key=value DSNs (`host=h password=pw`) and query strings (`?password=pw`)
_KEYWORD_PASSWORD = re.compile(r"((?<![A-Za-z])(?:PG)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)", re.I)


class LettaCompatError(Exception):
    """A problem reported to the user as one paragraph, never as a traceback."""

    def __str__(self) -> str:
        return redact(super().__str__())


class MatrixError(LettaCompatError):
    """The matrix file is malformed or asks for something that does not exist."""


class ProvisioningError(LettaCompatError):
    """Something the matrix needs could not be installed or started."""


class StoppedDuringStart(ProvisioningError):
    """A process or container ended before it was ready; the message carries its log's last lines."""


class StartTimedOut(ProvisioningError):
    """Waiting for something to become ready ran out of time while it was still running."""


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` masks it wherever it shows up."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets and any password inside a URL or DSN (whatever its scheme)."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
