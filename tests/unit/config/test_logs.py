"""Log lines: text by default, one JSON object a line with JOBKIT_LOG_FORMAT=json, in the format a shipper reads."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from jobkit.config.logs import JsonFormatter, adopt_worker_logging, configure_logging
from jobkit.config.settings import Settings


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as pytest had it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_format_is_text_unless_the_environment_says_json() -> None:
    assert Settings.from_env({}, dotenv=None).log_format == "text"
    assert Settings.from_env({"JOBKIT_LOG_FORMAT": " JSON "}, dotenv=None).log_format == "json"


def test_a_json_line_carries_time_level_logger_message_process_thread_and_the_extra_fields() -> None:
    record = logging.LogRecord("jobkit.tasks", logging.WARNING, __file__, 1, "%s failed\nin %dms", ("a:b", 3), None)
    record.task, record.duration_ms = "a:b", 3.0

    line = JsonFormatter().format(record)

    assert "\n" not in line
    fields = json.loads(line)
    assert fields["time"].endswith("+00:00") and fields["time"][:4].isdigit()
    assert {k: fields[k] for k in ("level", "logger", "message", "task", "duration_ms")} == {
        "level": "WARNING", "logger": "jobkit.tasks", "message": "a:b failed\nin 3ms", "task": "a:b",
        "duration_ms": 3.0,
    }  # fmt: skip
    assert isinstance(fields["pid"], int) and fields["thread"]


def test_an_exception_goes_into_the_line_as_text() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    fields = json.loads(JsonFormatter().format(record))

    assert fields["message"] == "failed" and "ValueError: boom" in fields["exception"]


def test_configure_logging_replaces_the_root_handlers_with_one_in_the_format_asked(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    logging.getLogger("jobkit.scheduler").info("%d entries", 3)
    configure_logging("text", stream=stream, text_format="jobkit: %(message)s")
    logging.getLogger("jobkit.supervisor").warning("worker 1 killed")

    first, second = stream.getvalue().splitlines()
    assert json.loads(first)["message"] == "3 entries"
    assert second == "jobkit: worker 1 killed"
    assert len(logging.getLogger().handlers) == 1


def test_a_dramatiq_worker_keeps_its_handler_and_stream_and_only_the_format_changes(root_logging: None) -> None:
    pipe = io.StringIO()  # what Dramatiq's CLI set up: a handler on the pipe its main process reads
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler(pipe)]
    root.handlers[0].setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))

    adopt_worker_logging("text")
    logging.getLogger("dramatiq").warning("as Dramatiq writes it")
    adopt_worker_logging("json")
    logging.getLogger("dramatiq").warning("as a shipper reads it")

    text, line = pipe.getvalue().splitlines()
    assert text == "[WARNING] as Dramatiq writes it"
    assert json.loads(line)["message"] == "as a shipper reads it"
