"""The builder's message ids are uuid4 strings, and its encoding is Dramatiq's, byte for byte (or the project's own
encoder, when it set one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder, PickleEncoder
from dramatiq.message import Message

from jobkit.engine.messages import encode_message, new_message_id


def test_message_ids_are_distinct_uuid4_strings() -> None:
    ids = [new_message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def _message() -> Message[Any]:
    return Message(
        queue_name="default", actor_name="t", args=(1, 2.5), message_id=new_message_id(),
        kwargs={"name": "Zoë ☃", "nested": {"list": [None, True, 1e100]}, "quote": '"\\'},
        options={"redis_message_id": "r1", "jobkit_due": 5},
    )  # fmt: skip


def test_encoding_is_dramatiqs_byte_for_byte() -> None:
    message = _message()
    assert encode_message(message) == message.encode()


@pytest.fixture
def pickle_encoder() -> Iterator[None]:
    dramatiq.set_encoder(PickleEncoder())
    try:
        yield
    finally:
        dramatiq.set_encoder(JSONEncoder())


@pytest.mark.usefixtures("pickle_encoder")
def test_a_projects_own_encoder_is_used() -> None:
    message = _message()
    assert encode_message(message) == message.encode()
    assert not encode_message(message).startswith(b"{")
