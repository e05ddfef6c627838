"""The event stream's caps (review M2): open streams per token and per process, under a real uvicorn, so each
stream holds a real connection the way a browser tab's does."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from litestar import Litestar

from jobkit.services.auth import mint_token, token_id
from jobkit.services.events import Events
from tests.support import wait_for
from tests.support.tokens import SECRET


@pytest.fixture
def served(app: Litestar) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port), its streams capped at 2 per token and 3 per process."""
    events: Events = app.state.services.events
    events.max_per_token, events.max_streams = 2, 3
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    events.disconnect_all()
    server.should_exit = True
    thread.join(10)


def test_streams_are_capped_per_token_and_per_process_and_a_closed_one_gives_its_place_back(
    served: str, app: Litestar
) -> None:
    events: Events = app.state.services.events
    ann, bob, cy = (mint_token(SECRET, sub, "viewer") for sub in ("ann", "bob", "cy"))
    with httpx.Client(base_url=served, timeout=10) as http, contextlib.ExitStack() as streams:

        def open_stream(token: str) -> httpx.Response:
            return streams.enter_context(
                http.stream("GET", "/api/jobs/events", headers={"Authorization": f"Bearer {token}"})
            )

        # Given two streams open on one token
        first, second = open_stream(ann), open_stream(ann)
        assert (first.status_code, second.status_code) == (200, 200)
        wait_for(lambda: events.open_for(token_id(ann)) == 2, what="two streams of ann")

        # Then a third on that token is refused, saying why, and the server still answers everything else
        refused = open_stream(ann)
        refused.read()
        assert refused.status_code == 429, refused.text
        assert "this token has 2 streams open already" in refused.json()["detail"]
        assert http.get("/health").status_code == 200

        # And another token may open one, until the process holds as many as it keeps
        assert open_stream(bob).status_code == 200
        full = open_stream(cy)
        full.read()
        assert full.status_code == 429 and "this API process has 3 streams open" in full.json()["detail"]

        # And once a stream of the first token ends, its place is free again
        first.close()
        wait_for(lambda: events.open_for(token_id(ann)) == 1, what="the closed stream to give its place back")
        assert open_stream(ann).status_code == 200
