"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, run in a thread.

It answers `POST /v1/chat/completions` with the next scripted reply, streamed
as server-sent events the way llama.cpp's and OpenAI's servers do (role
chunk, content chunks of a few characters, finish chunk, usage chunk,
`[DONE]`), or as one JSON object when the request does not ask to stream. A
reply may also be a misbehaviour: `KEEP_ALIVE` (keep-alive comments forever,
no answer) or `SILENT` (accept the request, never send a byte).

Because it runs in a thread of the test process, it serves both in-process
clients and `python -m taskloom` subprocesses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEEP_ALIVE = "<keep-alive forever>"
"""A reply that sends an SSE comment every 0.1 s and never an answer."""
SILENT = "<silent forever>"
"""A reply that never sends a byte."""
CHUNK_CHARS = 7
"""Characters per streamed content chunk: lines arrive in pieces, as from a real model."""


class ChatServer:
    """Replays `replies` in order, one per request, and records every request body."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.chat = self
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The API root to give a client: `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def next_reply(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.requests.append(body)
            index = len(self.requests) - 1
            return self.replies[index] if index < len(self.replies) else None

    def prompts(self) -> list[str]:
        """Each request's last message, in order."""
        return [str(r["messages"][-1]["content"]) for r in self.requests]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()  # ends every reply that would go on forever
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)


@contextmanager
def chat_server(replies: Sequence[str]) -> Iterator[ChatServer]:
    """A running ChatServer, stopped on exit."""
    server = ChatServer(replies)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    chat: ChatServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        reply = self.server.chat.next_reply(body)
        if reply is None:
            self._error(400, "the scripted server has no more replies")
        elif reply == SILENT:
            self.server.chat.stopping.wait()
        elif reply == KEEP_ALIVE:
            self._keep_alive()
        elif body.get("stream"):
            self._stream(reply)
        else:
            self._whole(reply)

    def _error(self, status: int, message: str) -> None:
        data = json.dumps({"error": {"message": message}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_events(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes

    def _event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _stream(self, text: str) -> None:
        self._start_events()
        self._event(_chunk({"role": "assistant"}))
        for start in range(0, len(text), CHUNK_CHARS):
            self._event(_chunk({"content": text[start : start + CHUNK_CHARS]}))
        self._event(_chunk({}, finish="stop"))
        usage = {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4)}
        self._event({"choices": [], "usage": usage})
        self._event("[DONE]")

    def _whole(self, text: str) -> None:
        message = {"role": "assistant", "content": text}
        data = json.dumps(
            {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _keep_alive(self) -> None:
        self._start_events()
        try:
            while not self.server.chat.stopping.wait(0.1):
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
        except OSError:
            pass  # the client gave up and closed the connection, as it should


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
