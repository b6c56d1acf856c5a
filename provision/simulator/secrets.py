"""Secrets as the API server keeps them, and the bootstrap tokens' cleaner.

On every write ``stringData`` is folded into ``data`` (base64) and dropped, ``type`` defaults to Opaque and may not
change, ``data`` holds base64 under valid keys. kube-controller-manager's token cleaner deletes a bootstrap token
Secret (type ``bootstrap.kubernetes.io/token`` in kube-system) once its ``expiration`` has passed.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

Obj = dict[str, Any]

BOOTSTRAP_TOKEN = "bootstrap.kubernetes.io/token"  # noqa: S105 - a Secret type's name
BOOTSTRAP_NAMESPACE = "kube-system"
KEY = re.compile(r"[-._a-zA-Z0-9]+")


class Invalid(Exception):
    """A Secret the API server refuses: ``code`` 400 (undecodable) or 422 (invalid), with its message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalize(secret: Obj, previous: Obj | None) -> None:
    """Fold stringData into data, default the type, and refuse what the API server refuses (in place)."""
    name = secret["metadata"].get("name", "")
    data = secret.get("data") or {}
    for value in data.values():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError) as error:
            raise Invalid(400, f'Secret in version "v1" cannot be handled as a Secret: {error}') from error
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key in data:
        if not KEY.fullmatch(key):
            raise Invalid(
                422,
                f'Secret "{name}" is invalid: data[{key}]: Invalid value: "{key}": a valid config key must consist '
                "of alphanumeric characters, '-', '_' or '.'",
            )
    secret["data"] = data
    secret["type"] = secret.get("type") or (previous or {}).get("type") or "Opaque"
    if previous is not None and previous.get("type") != secret["type"]:
        raise Invalid(422, f'Secret "{name}" is invalid: type: Invalid value: "{secret["type"]}": field is immutable')


def expired_bootstrap_token(secret: Obj, now: datetime) -> bool:
    """Whether the token cleaner deletes this Secret now: a bootstrap token in kube-system past its expiration."""
    if secret.get("type") != BOOTSTRAP_TOKEN or secret["metadata"].get("namespace") != BOOTSTRAP_NAMESPACE:
        return False
    encoded = (secret.get("data") or {}).get("expiration")
    if not encoded:
        return False
    try:
        expiration = datetime.fromisoformat(base64.b64decode(encoded).decode().replace("Z", "+00:00"))
    except ValueError:
        return False  # the cleaner skips what it cannot read
    return expiration.tzinfo is not None and expiration <= now
