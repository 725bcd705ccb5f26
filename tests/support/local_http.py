"""What the fake HTTP servers share: a threaded server on a free port of 127.0.0.1 and a
request handler that stays quiet and ignores clients that give up."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """No access log lines in test output; a client that hung up is nobody's error."""

    def log_message(self, *args: Any) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            pass  # the client gave up (a timeout under test): nothing to answer


class LocalHTTPServer:
    """Serves `handler` on a free port in a background thread until `stop()`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True  # a hanging request never blocks shutdown
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self):
        """Serve in a background thread; returns the server itself."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class ScriptedServer(LocalHTTPServer):
    """A fake server that fails on command: each request takes the next mode of `script`,
    else `mode`, and is recorded in `requests`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.mode = "ok"
        self.script: deque[str] = deque()
        self.hang_s = 5.0
        self.requests: list[Any] = []
        self._lock = threading.Lock()
        super().__init__(handler)

    def reset(self, mode: str = "ok", *script: str) -> None:
        """Set the default mode and the next requests' modes; forget seen requests."""
        with self._lock:
            self.mode = mode
            self.script = deque(script)
            self.requests.clear()

    def next_mode(self, seen: Any) -> str:
        """Record `seen` (what the handler read of the request) and return its mode."""
        with self._lock:
            self.requests.append(seen)
            return self.script.popleft() if self.script else self.mode
