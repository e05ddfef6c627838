"""Sealing sensitive fields: what is stored never holds the clear value, the right key opens it, rotation works."""

from __future__ import annotations

import pytest

from jobkit.engine.sealing import MASK, SEALED_PREFIX, Sealer, redact, scrub
from jobkit.errors import DispatchError


def test_a_sealed_field_holds_no_clear_value_and_opens_back() -> None:
    sealer = Sealer(["first key"])
    payload = {"to": "a@b.co", "token": "s3cr3t-token", "headers": {"authorization": "Bearer abc", "x": 1}}

    sealed = sealer.seal(payload, ("token", "headers.authorization", "missing.path"))

    assert sealed["to"] == "a@b.co" and sealed["headers"]["x"] == 1
    assert sealed["token"].startswith(SEALED_PREFIX) and "s3cr3t" not in str(sealed)
    assert sealer.seal(payload, ("token",))["token"] != sealed["token"]  # a fresh nonce each time
    assert sealer.open(sealed, ("token", "headers.authorization")) == payload
    assert payload["token"] == "s3cr3t-token"  # the caller's payload is not changed


def test_a_urls_query_string_is_sealed_and_masked_alone() -> None:
    sealer = Sealer(["k"])
    payload = {"url": "https://hooks.example.com/in?api_key=abc123&x=1"}

    sealed = sealer.seal(payload, ("url.query",))

    assert sealed["url"].startswith("https://hooks.example.com/in?jobkit:sealed:v1:") and "abc123" not in sealed["url"]
    assert sealer.open(sealed, ("url.query",)) == payload
    assert redact(sealed, ("url.query",)) == {"url": "https://hooks.example.com/in?***"}


def test_an_old_key_still_opens_after_rotation_and_a_value_cannot_move_fields() -> None:
    old = Sealer(["old key"])
    sealed = old.seal({"token": "t0ken", "other": "x"}, ("token",))
    rotated = Sealer(["new key", "old key"])

    assert rotated.open(sealed, ("token",))["token"] == "t0ken"
    assert rotated.seal({"token": "t"}, ("token",))["token"].split(":")[3] != sealed["token"].split(":")[3]
    with pytest.raises(DispatchError, match="which this process does not have"):
        Sealer(["new key"]).open(sealed, ("token",))
    moved = {"other": sealed["token"]}
    with pytest.raises(DispatchError, match="does not open"):
        rotated.open(moved, ("other",))


def test_redact_and_scrub_show_stars() -> None:
    assert redact({"token": "x", "a": {"b": 1}}, ("token", "a.b")) == {"token": MASK, "a": {"b": MASK}}
    assert scrub("bad token s3cr3t-token given", ["s3cr3t-token", "abc"]) == "bad token *** given"


def test_the_opener_gives_the_handler_clear_values_and_scrubs_its_errors() -> None:
    sealer = Sealer(["k"])
    seen: dict[str, str] = {}

    def handler(token: str) -> None:
        seen["token"] = token
        raise ValueError(f"token {token} was refused")

    run = sealer.opener(handler, ("token",))
    with pytest.raises(ValueError, match=r"^token \*\*\* was refused$"):
        run(**sealer.seal({"token": "s3cr3t"}, ("token",)))
    assert seen == {"token": "s3cr3t"}
