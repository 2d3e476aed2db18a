"""Keeping credentials out of everything assetry prints: configuration dumps, logs, error messages.

Backends call `secret_values` once with their options and URL, and pass every message that may echo them
(an exception from botocore, a Rust debug dump from LanceDB) through `redact_text`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "***"

SECRET_ENVIRONMENT = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
"""Environment variables that cloud SDKs (botocore, LanceDB's object store) read credentials from."""

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|session|private|(^|_)key$|^key$)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_secrets(data: Any) -> Any:
    """Replace values of secret-looking keys and credentials in URLs with ``***``, recursively."""
    if isinstance(data, Mapping):
        return {k: (REDACTED if is_secret_key(k) and v else redact_secrets(v)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_secrets(v) for v in data]
    if isinstance(data, str):
        return redact_url(data)
    return data


def redact_url(text: str) -> str:
    """``s3://key:secret@bucket/x`` -> ``s3://***@bucket/x``."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def secret_values(options: Mapping[str, Any], url: str = "") -> list[str]:
    """The literal secrets to keep out of messages, longest first: values of secret-looking keys at any
    depth of ``options``, credentials in the environment, and the user info of ``url``."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if is_secret_key(key) and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(options)
    found += [os.environ[name] for name in SECRET_ENVIRONMENT if os.environ.get(name)]
    match = _URL_USERINFO.search(url)
    if match:
        userinfo = match.group("userinfo")
        found += [userinfo, *userinfo.split(":")]
    unique = {value for value in found if len(value) >= _MIN_SECRET_LENGTH and value != REDACTED}
    return sorted(unique, key=len, reverse=True)


def redact_text(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every given secret (longest first) and any URL user info replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return redact_url(text)
