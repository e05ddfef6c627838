"""The builder's message ids are uuid4 strings; a message is stored as Dramatiq encodes it: byte for byte, or (one
the builder checked) as the same JSON values; and with the project's own encoder when it set one."""

from __future__ import annotations

import json
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


def test_an_unchecked_message_is_encoded_as_dramatiq_does_byte_for_byte() -> None:
    message = _message()
    assert encode_message(message) == message.encode()


def test_a_checked_ascii_message_carries_the_same_json_values() -> None:
    message = _message().copy(kwargs={"name": 'Ann "A" \\ \n', "n": [1e100, 0.1, -(2**63)], "none": None})
    data = encode_message(message, checked=True)
    assert json.loads(data) == json.loads(message.encode())
    assert Message.decode(data) == message  # what a worker reads back


def test_a_checked_message_with_non_ascii_text_is_escaped_as_dramatiq_does() -> None:
    message = _message()  # "Zoë ☃": search looks for text as Dramatiq escapes it
    assert encode_message(message, checked=True) == message.encode()


def test_a_value_msgspec_refuses_falls_back_to_dramatiqs_encoding() -> None:
    message = _message().copy(kwargs={"big": 2**70})
    assert encode_message(message, checked=True) == message.encode()


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
    assert encode_message(message) == encode_message(message, checked=True) == message.encode()
    assert not encode_message(message).startswith(b"{")
