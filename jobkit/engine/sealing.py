"""Sensitive payload fields: sealed (encrypted) in every message jobkit stores, "***" in every way out.

A task's ``sensitive:`` paths name fields of its payload (``token``, ``headers.authorization``); ``url.query`` names
the query string of the URL in ``url``. The message builder seals them before anything reaches Redis, so the pending
list, the retry and dead-letter sets, completed records, the AOF, replicas and backups hold ciphertext only. The
worker opens them just before it calls the handler (:meth:`Sealer.opener`); the message keeps its sealed copy, so
retries, the completed record and Dramatiq's own log lines never see the clear value. Readers (API, CLI, dashboard,
reports) show :func:`redact`'s "***".

Sealing is AES-256-GCM (``cryptography``), a fresh 96-bit nonce per value, the field's path as associated data (a
sealed value cannot be moved to another field). The key is ``JOBKIT_ENCRYPTION_KEY`` (older keys after a comma, for
rotation: new values are sealed with the first, any of them opens) or one derived from ``JOBKIT_SECRET``. A sealed
value is text: ``jobkit:sealed:v1:<key id>:<base64 nonce + ciphertext>``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jobkit.engine.running import current
from jobkit.errors import DispatchError

__all__ = ["MASK", "SEALED_PREFIX", "Sealer", "redact", "scrub", "scrub_value"]

MASK = "***"
SEALED_PREFIX = "jobkit:sealed:v1:"
_QUERY = "query"


def _derive(secret: str) -> bytes:
    """A 256-bit key from any secret text (HKDF-SHA256), so a key can be written as a passphrase."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"jobkit", info=b"sensitive fields").derive(secret.encode())


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _split(path: str) -> list[str]:
    return path.split(".")


def _walk(payload: Any, path: str, change: Callable[[Any, str], Any]) -> Any:
    """``payload`` with ``change(value, path)`` applied to the value at ``path`` (missing paths change nothing)."""
    parts = _split(path)

    def visit(node: Any, index: int) -> Any:
        part = parts[index]
        last = index == len(parts) - 1
        if isinstance(node, Mapping) and part in node:
            new = dict(node)
            new[part] = change(node[part], path) if last else visit(node[part], index + 1)
            return new
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            new_list = list(node)
            new_list[int(part)] = change(node[int(part)], path) if last else visit(node[int(part)], index + 1)
            return new_list
        if isinstance(node, str) and last and part == _QUERY:  # `url.query`: the URL's query string
            parts_of_url = urlsplit(node)
            if parts_of_url.query:
                return urlunsplit(parts_of_url._replace(query=change(parts_of_url.query, path)))
        return node

    return visit(payload, 0)


def redact(payload: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``payload`` with the value at each of ``paths`` shown as "***" (sealed or not)."""
    result: Any = dict(payload)
    for path in paths:
        result = _walk(result, path, lambda value, _path: MASK)
    return dict(result)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of 4 characters or more) replaced by "***"."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class Sealer:
    """Seals and opens the sensitive fields of payloads with one current key and any number of older ones."""

    def __init__(self, secrets: Iterable[str]) -> None:
        keys = [_derive(secret) for secret in secrets if secret]
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        self._current = keys[0]
        self._current_id = _key_id(keys[0])
        self._keys = {_key_id(key): AESGCM(key) for key in keys}

    def digest(self, text: str) -> str:
        """A keyed digest (HMAC-SHA256 with the current key) of ``text``, in hex."""
        return hmac.new(self._current, text.encode(), hashlib.sha256).hexdigest()

    # -- single values ---------------------------------------------------------------------------------------------
    def seal_value(self, value: Any, path: str) -> str:
        nonce = os.urandom(12)
        data = json.dumps(value, separators=(",", ":")).encode()
        sealed = self._keys[self._current_id].encrypt(nonce, data, path.encode())
        return f"{SEALED_PREFIX}{self._current_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open_value(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or not value.startswith(SEALED_PREFIX):
            return value  # not sealed (a message from before `sensitive:` was declared, or from a stock producer)
        key_id, _, blob = value.removeprefix(SEALED_PREFIX).partition(":")
        aead = self._keys.get(key_id)
        if aead is None:
            raise DispatchError(
                f"{path}: sealed with key {key_id}, which this process does not have "
                "(add the old key after a comma in JOBKIT_ENCRYPTION_KEY)"
            )
        raw = base64.urlsafe_b64decode(blob)
        try:
            return json.loads(aead.decrypt(raw[:12], raw[12:], path.encode()))
        except InvalidTag:
            raise DispatchError(f"{path}: the sealed value does not open with key {key_id}") from None

    # -- payloads --------------------------------------------------------------------------------------------------
    def seal(self, payload: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
        """``payload`` with each of ``paths`` sealed (a path the payload does not have is left alone)."""
        result: Any = payload
        for path in paths:
            result = _walk(result, path, self.seal_value)
        return dict(result)

    def open(self, payload: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
        result: Any = dict(payload)
        for path in paths:
            result = _walk(result, path, self.open_value)
        return dict(result)

    def opener(self, fn: Callable[..., Any], paths: tuple[str, ...]) -> Callable[..., Any]:
        """``fn`` called with its sensitive fields opened. An error it raises is scrubbed of their clear values before
        anyone logs or stores it (its type stays, so retry rules still match)."""

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            opened = self.open(kwargs, paths)
            secrets = _secrets(_texts(opened, paths))
            running = current()
            if running is not None:
                running.secrets = secrets  # a progress note never shows them
            try:
                result = fn(*args, **opened)
            except Exception as exc:
                if secrets:
                    exc.args = tuple(scrub(a, secrets) if isinstance(a, str) else a for a in exc.args)
                raise
            # What the handler returns is kept, shown and fed to a workflow's next step: a clear value only where a
            # sensitive path says it may be (sealed at rest there, and opened by TaskRef.result()).
            return _scrub_result(result, paths, secrets) if secrets else result

        return run


def _secrets(texts: Iterable[str]) -> tuple[str, ...]:
    """The texts worth scrubbing (4 characters or more), the longest first, each once."""
    return tuple(sorted({text for text in texts if len(text) >= 4}, key=len, reverse=True))


def scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (any JSON shape) with every occurrence of each secret in its texts, keys included, as "***"."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return {scrub_value(key, secrets): scrub_value(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(item, secrets) for item in value]
    return value


def _scrub_result(result: Any, paths: Iterable[str], secrets: tuple[str, ...]) -> Any:
    """``result`` scrubbed of ``secrets`` everywhere except at the sensitive ``paths`` (which are sealed later)."""
    scrubbed = scrub_value(result, secrets)
    if not isinstance(result, Mapping):
        return scrubbed
    for path in paths:
        kept = _values_at(result, path)
        if kept:
            scrubbed = _walk(scrubbed, path, functools.partial(_put_back, kept[0]))
    return scrubbed


def _put_back(original: Any, _value: Any, _path: str) -> Any:
    return original


def _values_at(payload: Any, path: str) -> list[Any]:
    found: list[Any] = []

    def keep(value: Any, _path: str) -> Any:
        found.append(value)
        return value

    _walk(payload, path, keep)
    return found


def _texts(payload: Mapping[str, Any], paths: Iterable[str]) -> list[str]:
    """The clear text of each sensitive value (for scrubbing error messages, results and progress notes). For
    ``url.query`` also each parameter's value, as written and decoded: an error that quotes one value names it."""
    found: list[str] = []

    def keep(value: Any, path: str) -> Any:
        text = value if isinstance(value, str) else json.dumps(value)
        found.append(text)
        if isinstance(value, str) and _split(path)[-1] == _QUERY:
            for pair in value.split("&"):
                raw = pair.partition("=")[2]
                found.extend((raw, unquote_plus(raw)))
        return value

    for path in paths:
        _walk(payload, path, keep)
    return found
