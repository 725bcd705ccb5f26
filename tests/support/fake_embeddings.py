"""A local HTTP server that speaks OpenAI's /v1/embeddings and text-embeddings-inference's
/embed and /info, with vectors made from each text's words, and fails on command.

Modes: "ok", "error500", "ratelimit" (429 with Retry-After: 0), "hang" (no answer for
`hang_s`), "malformed" (200 with a body in no embedding format), "badrequest" (400). Each
request takes the next of `script`, else `mode`.
"""

from __future__ import annotations

import hashlib
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import QuietHandler, ScriptedServer

DIMENSION = 8
MODEL = "fake/embedder-8"


def vector(text: str, dimension: int = DIMENSION) -> list[float]:
    """A stand-in embedding: each word adds to the axes its hash picks (not normalised, as
    some servers send them)."""
    values = [0.0] * dimension
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        values[digest[0] % dimension] += 1.0 + digest[1] / 255
    return values if any(values) else [1.0] + [0.0] * (dimension - 1)


class FakeEmbeddingServer(ScriptedServer):
    """OpenAI at POST /v1/embeddings, TEI at POST /embed and GET /info."""

    def __init__(self, dimension: int = DIMENSION) -> None:
        self.dimension = dimension
        super().__init__(_handler(self))


def _handler(fake: FakeEmbeddingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path == "/info":
                self._reply(200, {"model_id": MODEL, "max_input_length": 512})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            mode = fake.next_mode((self.path, body))
            if mode == "hang":
                time.sleep(fake.hang_s)
                return
            if mode == "error500":
                return self._reply(500, {"error": "model crashed"})
            if mode == "ratelimit":
                return self._reply(429, {"error": "slow down"}, {"Retry-After": "0"})
            if mode == "badrequest":
                return self._reply(400, {"error": "input too long"})
            if mode == "malformed":
                return self._reply(200, {"unexpected": True})
            if self.path == "/v1/embeddings":
                data = [
                    {"object": "embedding", "index": i, "embedding": vector(text, fake.dimension)}
                    for i, text in enumerate(body["input"])
                ]
                data.reverse()  # servers may answer out of order: the index says which
                return self._reply(200, {"object": "list", "data": data, "model": body["model"]})
            if self.path == "/embed":
                return self._reply(200, [vector(t, fake.dimension) for t in body["inputs"]])
            self._reply(404, {"error": "not found"})

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
