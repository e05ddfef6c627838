"""A stand-in for SendGrid's v3 Mail Send endpoint on 127.0.0.1, over HTTPS with a certificate made for the test.

It checks every request the way the documented v3 API does (``POST /v3/mail/send``, ``Authorization: Bearer
<key>``, a JSON body that fits the request schema, :func:`mail_send_problems`) and answers each with the next of
``answers`` (then 202 with an ``X-Message-Id``). A request that breaks the contract gets SendGrid's 400 or 401 and
its problems are kept in ``problems``, so a test that expects delivery fails on them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jobkit.config.settings import Settings
from tests.support.tls import make_certificates

PATH = "/v3/mail/send"
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
# The v3 schema's top-level fields; anything else is a typo SendGrid would not act on.
_TOP_LEVEL = {
    "personalizations", "from", "reply_to", "reply_to_list", "subject", "content", "attachments", "template_id",
    "headers", "categories", "custom_args", "send_at", "batch_id", "asm", "ip_pool_name", "mail_settings",
    "tracking_settings",
}  # fmt: skip
_PERSONALIZATION = {"to", "cc", "bcc", "from", "subject", "headers", "substitutions", "dynamic_template_data",
                    "custom_args", "send_at"}  # fmt: skip
_ATTACHMENT = {"content", "type", "filename", "disposition", "content_id"}
# "You may not overwrite the following headers" (the v3 reference, headers).
_RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
                     "to", "from", "subject", "reply-to", "cc", "bcc"}  # fmt: skip


def _email_object(value: object, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object with an email, found {type(value).__name__}"]
    problems = [f"{where}.{key}: not a field of an email object" for key in value if key not in ("email", "name")]
    email = value.get("email")
    if not isinstance(email, str) or not _EMAIL.fullmatch(email):
        problems.append(f"{where}.email: expected a valid address, found {email!r}")
    if "name" in value and not isinstance(value["name"], str):
        problems.append(f"{where}.name: expected a string")
    return problems


def _email_list(value: object, where: str, required: bool) -> tuple[list[str], list[str]]:
    """(problems, addresses) of a to/cc/bcc array."""
    if not isinstance(value, list) or (required and not value):
        return [f"{where}: expected an array of at least one email object"], []
    problems = [p for n, item in enumerate(value) for p in _email_object(item, f"{where}[{n}]")]
    return problems, [str(item.get("email", "")).lower() for item in value if isinstance(item, dict)]


def _headers(value: object, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object of header names and values"]
    problems = []
    for name, text in value.items():
        if name.lower() in _RESERVED_HEADERS:
            problems.append(f"{where}.{name}: a reserved header, SendGrid sets it itself")
        if not isinstance(text, str) or not text.isascii() or "\r" in text or "\n" in text:
            problems.append(f"{where}.{name}: expected one line of ASCII (RFC 2047-encoded), found {text!r}")
    return problems


def mail_send_problems(body: object) -> list[str]:
    """What is wrong with ``body`` as a v3 Mail Send request, per SendGrid's documented request schema; [] when
    nothing is."""
    if not isinstance(body, dict):
        return [f"body: expected a JSON object, found {type(body).__name__}"]
    problems = [f"{key}: not a v3 Mail Send field" for key in body if key not in _TOP_LEVEL]
    for key in ("personalizations", "from", "subject", "content"):
        if key not in body and not (key in ("subject", "content") and "template_id" in body):
            problems.append(f"{key}: required")

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        problems.append("personalizations: expected an array of 1 to 1000 objects")
        personalizations = []
    everyone: list[str] = []
    for n, item in enumerate(personalizations):
        where = f"personalizations[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object")
            continue
        problems += [f"{where}.{key}: not a personalization field" for key in item if key not in _PERSONALIZATION]
        for kind in ("to", "cc", "bcc"):
            if kind in item or kind == "to":
                found, addresses = _email_list(item.get(kind), f"{where}.{kind}", required=kind == "to")
                problems += found
                everyone += addresses
        if "subject" in item and (not isinstance(item["subject"], str) or not item["subject"]):
            problems.append(f"{where}.subject: expected a non-empty string")
        if "headers" in item:
            problems += _headers(item["headers"], f"{where}.headers")
    if len(everyone) > 1000:
        problems.append("personalizations: more than 1000 recipients (to + cc + bcc)")
    if len(set(everyone)) != len(everyone):
        problems.append("personalizations: an address is included more than once")

    if "from" in body:
        problems += _email_object(body["from"], "from")
    if "reply_to" in body:
        problems += _email_object(body["reply_to"], "reply_to")
        if "reply_to_list" in body:
            problems.append("reply_to: mutually exclusive with reply_to_list")
    if "subject" in body and (not isinstance(body["subject"], str) or not body["subject"]):
        problems.append("subject: expected a non-empty string")

    content = body.get("content", [])
    if not isinstance(content, list) or ("content" in body and not content):
        problems.append("content: expected an array of at least one {type, value}")
        content = []
    types = []
    for n, part in enumerate(content):
        if not isinstance(part, dict) or set(part) != {"type", "value"}:
            problems.append(f"content[{n}]: expected exactly type and value")
            continue
        if not isinstance(part["type"], str) or not part["type"]:
            problems.append(f"content[{n}].type: expected a MIME type")
        if not isinstance(part["value"], str) or not part["value"]:
            problems.append(f"content[{n}].value: expected a non-empty string")
        types.append(part["type"])
    # "If included, text/plain and text/html must be the first indices of the array in this order."
    leading = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(leading)] != leading:
        problems.append(f"content: text/plain then text/html must come first, found {types}")

    attachments = body.get("attachments", [])
    if not isinstance(attachments, list):
        problems.append("attachments: expected an array")
        attachments = []
    for n, attachment in enumerate(attachments):
        where = f"attachments[{n}]"
        if not isinstance(attachment, dict):
            problems.append(f"{where}: expected an object")
            continue
        problems += [f"{where}.{key}: not an attachment field" for key in attachment if key not in _ATTACHMENT]
        try:
            base64.b64decode(attachment.get("content", ""), validate=True)
            if not attachment.get("content"):
                raise ValueError
        except (binascii.Error, ValueError, TypeError):
            problems.append(f"{where}.content: expected non-empty base64")
        if not isinstance(attachment.get("filename"), str) or not attachment["filename"]:
            problems.append(f"{where}.filename: required")
        if "type" in attachment and (not isinstance(attachment["type"], str) or not attachment["type"]):
            problems.append(f"{where}.type: expected a MIME type")
        if attachment.get("disposition", "attachment") not in ("inline", "attachment"):
            problems.append(f"{where}.disposition: expected inline or attachment")
    if "headers" in body:
        problems += _headers(body["headers"], "headers")
    return problems


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    """JSON to send back, or None for an empty body."""


@dataclass
class Received:
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    at: float
    """``time.monotonic()`` when the request arrived."""
    status: int = 0
    """What the stand-in answered."""


def sendgrid_errors(*messages: tuple[str | None, str]) -> dict[str, Any]:
    """A body in SendGrid's error format: ``sendgrid_errors(("from.email", "..."), (None, "..."))``."""
    return {"errors": [{"field": name, "message": text, "help": None} for name, text in messages]}


@dataclass
class SendGridStandIn:
    url: str
    """The base URL, as ``SENDGRID_API_URL`` takes it: ``https://127.0.0.1:<port>``."""
    ca_file: Path
    api_key: str = field(default_factory=lambda: f"SG.stand-in-{uuid.uuid4().hex}.{uuid.uuid4().hex}")
    answers: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> list[Received]:
        """The requests answered 2xx: the mails SendGrid would send."""
        return [request for request in self.received if 200 <= request.status < 300]

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[Answer, Received]:
        request = Received(headers, None, time.monotonic())
        if method != "POST" or path != PATH:
            self.problems.append(f"{method} {path}: not the v3 Mail Send endpoint")
            return Answer(404, body=sendgrid_errors((None, "not found"))), request
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self.problems.append("Authorization: expected the bearer key")
            return Answer(401, body=sendgrid_errors((None, "The provided authorization grant is invalid"))), request
        if not headers.get("content-type", "").startswith("application/json"):
            self.problems.append(f"Content-Type: expected application/json, found {headers.get('content-type')!r}")
        try:
            request.body = json.loads(raw)
        except ValueError:
            self.problems.append("body: not JSON")
            return Answer(400, body=sendgrid_errors((None, "Bad Request"))), request
        found = mail_send_problems(request.body)
        if found:
            self.problems += found
            return Answer(400, body=sendgrid_errors(*((p.split(":")[0], p) for p in found))), request
        if self.answers:
            return self.answers.pop(0), request
        return Answer(202, {"X-Message-Id": uuid.uuid4().hex[:22]}), request


def sendgrid_settings(settings: Settings, stand_in: SendGridStandIn, **overrides: Any) -> Settings:
    """``settings`` sending through ``stand_in`` and trusting its certificate (for this test only)."""
    values: dict[str, Any] = {
        "mail_mailer": "sendgrid",
        "sendgrid_api_key": stand_in.api_key,
        "sendgrid_api_url": stand_in.url,
        "sendgrid_ca_bundle": stand_in.ca_file,
        "mail_from": "Jobkit <noreply@example.com>",
    }
    return replace(settings, **{**values, **overrides})


@contextmanager
def sendgrid_stand_in(directory: Path) -> Iterator[SendGridStandIn]:
    """The stand-in on a free port of 127.0.0.1, its CA and certificate made under ``directory``."""
    certificates = make_certificates(directory)
    lock = threading.Lock()
    state: SendGridStandIn | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            assert state is not None
            with lock:
                answer, request = state.handle(self.command, self.path, headers, raw)
                request.status = answer.status
                state.received.append(request)
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_GET = _serve

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = certificates.server_context().wrap_socket(server.socket, server_side=True)
    state = SendGridStandIn(url=f"https://127.0.0.1:{server.server_address[1]}", ca_file=certificates.ca_file)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
