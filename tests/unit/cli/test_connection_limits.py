"""`jobkit api`'s connection limits: under the process's file limit, with room for requests besides the streams."""

from __future__ import annotations

import pytest

from jobkit.cli.ops import OTHER_REQUESTS, RESERVED_FILES, connection_limits
from jobkit.services.events import MAX_STREAMS


def test_a_usual_file_limit_keeps_every_stream_and_room_for_other_requests() -> None:
    assert connection_limits(1024) == (MAX_STREAMS + OTHER_REQUESTS, MAX_STREAMS)
    assert connection_limits(-1) == (MAX_STREAMS + OTHER_REQUESTS, MAX_STREAMS)  # unlimited


@pytest.mark.parametrize("open_files", [256, 128, 64, 16])
def test_a_low_file_limit_lowers_both_and_streams_never_take_every_connection(open_files: int) -> None:
    # the review's reproduction ran `ulimit -n 256`: 300 streams of one token took every descriptor
    connections, streams = connection_limits(open_files)
    assert connections <= max(32, open_files - RESERVED_FILES)
    assert 1 <= streams <= connections // 2 + 1
    assert connections - streams >= min(OTHER_REQUESTS, connections // 2)
