"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests (``http.server`` in a thread).

``ChatCompletionsServer`` listens on a free port as soon as it is built, parses each POST body as JSON,
records it in ``bodies`` and replies with what :meth:`~ChatCompletionsServer.respond` returns: by default
a ``chat.completion`` whose content is :meth:`~ChatCompletionsServer.answer` of the body. A test's server
overrides ``answer`` (the text) or ``respond`` (status codes, headers, raw bodies, delays, checks).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any, dict[str, str]]  # status, JSON payload (or raw bytes), extra headers


def completion(content: str, model: str, usage: tuple[int, int] = (10, 2)) -> dict[str, Any]:
    """A ``chat.completion`` response with one choice saying ``content``; ``usage`` = (prompt, completion) tokens."""
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


class ChatCompletionsServer:
    """Serves until :meth:`close` (or the end of a ``with`` block); ``url`` is its ``.../v1`` base URL."""

    usage: tuple[int, int] = (10, 2)  # tokens reported by the default reply

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server.lock:
                    server.bodies.append(body)
                status, payload, headers = server.respond(body, self)
                headers = dict(headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def base_url(self, userinfo: str = "") -> str:
        """``http://<userinfo>127.0.0.1:<port>/v1`` (``userinfo`` like ``"user:password@"``)."""
        return f"http://{userinfo}127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def url(self) -> str:
        return self.base_url()

    def respond(self, body: dict[str, Any], request: BaseHTTPRequestHandler) -> Reply:
        """The reply to one request (``request.headers`` / ``request.path`` are the HTTP request's)."""
        return 200, completion(self.answer(body), body["model"], self.usage), {}

    def answer(self, body: dict[str, Any]) -> str:
        """The assistant's text for one request body."""
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ChatCompletionsServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
