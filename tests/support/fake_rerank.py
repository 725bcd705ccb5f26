"""A local HTTP server that speaks text-embeddings-inference's /rerank and the Cohere-style
/v1/rerank, scoring by shared words, and fails on command.

Modes: "ok", "error500", "ratelimit" (429), "hang" (no answer for `hang_s`), "malformed"
(200 with a body that is not the format). Each request takes the next of `script`, else `mode`.
"""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import QuietHandler, ScriptedServer

_WORD = re.compile(r"[a-z0-9]+")


def overlap_score(query: str, text: str) -> float:
    """Share of the query's words that occur in the text: a stand-in for a model's relevance."""
    wanted = set(_WORD.findall(query.lower()))
    found = set(_WORD.findall(text.lower()))
    return len(wanted & found) / (len(wanted) or 1)


class FakeRerankServer(ScriptedServer):
    """TEI at POST /rerank, Cohere/vLLM/Jina/Infinity at POST /v1/rerank."""

    def __init__(self) -> None:
        super().__init__(_handler(self))


def _handler(fake: FakeRerankServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            mode = fake.next_mode((self.path, body, headers))
            if mode == "hang":
                time.sleep(fake.hang_s)
            if mode == "error500":
                return self._send(500, {"error": "model crashed"})
            if mode == "ratelimit":
                return self._send(429, {"error": "too many requests"})
            if self.path == "/rerank":
                texts = body["texts"]
                ranked = self._ranked(body["query"], texts)
                reply: Any = [{"index": i, "score": s} for i, s in ranked]
                if mode == "malformed":
                    reply = {"unexpected": True}
            elif self.path == "/v1/rerank":
                ranked = self._ranked(body["query"], body["documents"])[: body.get("top_n")]
                reply = {
                    "id": "rerank-1",
                    "results": [{"index": i, "relevance_score": s} for i, s in ranked],
                }
                if mode == "malformed":
                    reply = {"results": [{"index": 99}]}
            else:
                return self._send(404, {"error": "not found"})
            self._send(200, reply)

        @staticmethod
        def _ranked(query: str, texts: list[str]) -> list[tuple[int, float]]:
            scores = [(i, overlap_score(query, t)) for i, t in enumerate(texts)]
            return sorted(scores, key=lambda pair: pair[1], reverse=True)

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except ConnectionError:
                pass

    return Handler
