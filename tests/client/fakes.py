"""A scripted HTTP server on loopback, for what the real service does not do on demand: answer 503 with
Retry-After, answer slowly, answer with a proxy's HTML, or with an error code this client does not know."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b'{"status": "ok"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass
class Script:
    """Answers given in order (the last one repeats) and the paths of the requests received."""

    answers: list[Answer]
    received: list[str] = field(default_factory=list)

    def next(self, path: str) -> Answer:
        self.received.append(path)
        return self.answers[min(len(self.received), len(self.answers)) - 1]


def error_json(code: str, message: str = "scripted") -> bytes:
    return f'{{"error": {{"code": "{code}", "message": "{message}", "details": null}}}}'.encode()


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            answer = script.next(self.path)
            time.sleep(answer.delay_s)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


@contextmanager
def scripted_server(*answers: Answer) -> Iterator[tuple[str, Script]]:
    """Serve ``answers`` on a free 127.0.0.1 port; yield (base URL, script)."""
    script = Script(list(answers))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
