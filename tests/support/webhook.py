"""A real webhook receiver on 127.0.0.1 for the tests: answers each POST with the next of ``statuses`` (then
``default_status``) and keeps every request it received."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    default_status: int = 200

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.requests]

    def rules(self) -> list[str]:
        """The alert rule named by each JSON body received."""
        return [json.loads(body)["data"]["rule"] for body in self.bodies]


@contextmanager
def webhook_receiver(path: str = "/hook", default_status: int = 200) -> Iterator[Receiver]:
    state = Receiver(default_status=default_status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers.items()), body))
            self.send_response(state.statuses.pop(0) if state.statuses else state.default_status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
