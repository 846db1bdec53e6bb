"""An OpenAI-compatible ``/v1/chat/completions`` endpoint over a run's systems (``ecrflow serve``), so that
any client or user simulator can talk to them.

The dialogue history travels in ``messages`` (system messages are ignored), so the server keeps no state
and concurrent conversations cannot interfere; the model calls are serialised by the system's lock. The
``model`` field picks the system (``ecr``, ``unicrs``, ``ecr_rl``; absent: the server's default). The
answer is a ``chat.completion`` object whose message is the reply; the extra ``ecrflow`` field holds the
ranked items, the linked entities and the detected emotions. A malformed request gets a 4xx with an
OpenAI-style ``{"error": {"message", "type"}}`` body.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .system import check_history

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: a conversation, not an upload


class _Handler(BaseHTTPRequestHandler):
    server_version = "ecrflow"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request in our log, not on stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind}})

    def do_GET(self):
        if self.path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": s, "object": "model", "owned_by": "ecrflow"}
                                                        for s in self.server.chat.systems]})
        else:
            self._error(404, f"no route {self.path}; POST /v1/chat/completions", "not_found")

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}; POST /v1/chat/completions", "not_found")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(400, "Content-Length is not a number")
            return
        if length > MAX_BODY:
            self._error(413, f"request body of {length} bytes; at most {MAX_BODY}")
            return
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._error(400, f"the body is not JSON: {e}")
            return
        try:
            system, history, top_k = self._parse(body)
        except ValueError as e:
            self._error(400, str(e))
            return
        try:
            reply = self.server.chat.respond(history, system=system, top_k=top_k)
        except Exception as e:  # noqa: BLE001 - the client gets the reason; the log gets the traceback
            log.exception("request failed")
            self._error(500, f"{type(e).__name__}: {e}", "server_error")
            return
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": system,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "ecrflow": {k: v for k, v in reply.to_json().items() if k != "reply"},
        })

    def _parse(self, body) -> tuple[str, list[tuple[str, str]], int]:
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object with 'messages'")
        if body.get("stream"):
            raise ValueError("streaming is not supported; send stream: false")
        if int(body.get("n", 1) or 1) != 1:
            raise ValueError("only n = 1 is supported")
        system = body.get("model") or self.server.default_system
        if system not in self.server.chat.systems:
            raise ValueError(f"unknown model {system!r}; this server has {', '.join(self.server.chat.systems)}")
        top_k = body.get("top_k", self.server.top_k)
        if not isinstance(top_k, int) or not 1 <= top_k <= 100:
            raise ValueError("top_k must be an integer from 1 to 100")
        return system, check_history(body.get("messages")), top_k


class ChatServer(ThreadingHTTPServer):
    """``chat``: anything with ``systems`` and ``respond(history, system=, top_k=)`` (a ChatSystem)."""

    daemon_threads = True

    def __init__(self, chat, host: str = "127.0.0.1", port: int = 8000, default_system: str | None = None,
                 top_k: int = 10):
        self.chat = chat
        self.default_system = default_system or ("ecr" if "ecr" in chat.systems else chat.systems[0])
        self.top_k = top_k
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, notebooks); ``shutdown()`` stops it."""
        t = threading.Thread(target=self.serve_forever, daemon=True)
        t.start()
        return t
