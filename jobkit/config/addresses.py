"""Email addresses as jobkit accepts them: one bare address (``user@example.com``), checked before anything is sent.

Used when jobs.yaml loads (alert channels) and by the mail tasks.
"""

from __future__ import annotations

import re

from jobkit.errors import BadMessage

__all__ = ["check_address"]

_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_address(value: object, field: str) -> str:
    """``value`` as a single bare address (``user@example.com``), or :class:`BadMessage` naming ``field``."""
    if not isinstance(value, str):
        raise BadMessage(f"{field}: expected an email address, found {type(value).__name__}")
    address = value.strip()
    local, at, domain = address.rpartition("@")
    labels = domain.split(".")
    valid = (
        at == "@"
        and len(address) <= 254
        and len(local) <= 64
        and _LOCAL_PART.fullmatch(local) is not None
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and (len(labels) > 1 or domain == "localhost")
    )
    if not valid:
        raise BadMessage(f"{field}: invalid email address {value!r} (expected one address like user@example.com)")
    return address
