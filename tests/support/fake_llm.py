"""A local HTTP server that speaks the OpenAI and Anthropic wire formats and fails on command.

The official SDKs are pointed at it with `base_url`. Each request takes its mode from
`model_modes` by the model it names, else the next of `script`, else `mode`:
"ok", "error500", "ratelimit" (429 + Retry-After), "hang" (no answer for `hang_s`),
"malformed" (200 with broken JSON), "unauthorized" (401), "bad_request" (400),
"break_stream" (a stream that fails after `pieces_before_break` pieces).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import LocalHTTPServer, QuietHandler


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    body: dict[str, Any]
    mode: str
    headers: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class FakeLLMServer(LocalHTTPServer):
    """OpenAI chat completions at /v1/chat/completions, Anthropic messages at /v1/messages."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.script: deque[str] = deque()
        self.model_modes: dict[str, str] = {}
        self.text = "Paris is the capital of France [1]."
        self.retry_after = 0.2
        self.hang_s = 5.0
        self.pieces_before_break = 2
        self.input_tokens = 42
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        super().__init__(_handler(self))

    def reset(self, mode: str = "ok", *script: str) -> None:
        """Set the default mode and the modes of the next requests; forget seen requests."""
        with self._lock:
            self.mode = mode
            self.script = deque(script)
            self.model_modes.clear()
            self.requests.clear()

    def next_mode(self, seen: Seen) -> str:
        """The mode for the request being handled (recorded with it)."""
        with self._lock:
            if seen.body.get("model") in self.model_modes:
                seen.mode = self.model_modes[seen.body["model"]]
            else:
                seen.mode = self.script.popleft() if self.script else self.mode
            self.requests.append(seen)
            return seen.mode

    def pieces(self) -> list[str]:
        """The answer split the way a model streams it."""
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _handler(fake: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.0"  # streams end by closing the connection

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            anthropic = self.path.endswith("/messages")
            seen = Seen(self.path, body, "", {k.lower(): v for k, v in self.headers.items()})
            mode = fake.next_mode(seen)
            if mode == "hang":
                time.sleep(fake.hang_s)
                mode = "ok"
            if mode == "error500":
                return self._error(500, "api_error", anthropic)
            if mode == "ratelimit":
                return self._error(
                    429, "rate_limit_error", anthropic, {"retry-after": str(fake.retry_after)}
                )
            if mode == "unauthorized":
                return self._error(401, "authentication_error", anthropic)
            if mode == "bad_request":
                return self._error(400, "invalid_request_error", anthropic)
            if mode == "malformed":
                return self._send(200, b'{"choices": [ {"message": ', "application/json")
            if body.get("stream"):
                return self._stream(body, anthropic, broken=mode == "break_stream")
            return self._send(200, json.dumps(self._whole(body, anthropic)).encode())

        def _whole(self, body: dict, anthropic: bool) -> dict:
            output = len(fake.pieces())
            if anthropic:
                return {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", ""),
                    "content": [{"type": "text", "text": fake.text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": fake.input_tokens, "output_tokens": output},
                }
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": fake.text},
                    }
                ],
                "usage": {
                    "prompt_tokens": fake.input_tokens,
                    "completion_tokens": output,
                    "total_tokens": fake.input_tokens + output,
                },
            }

        def _stream(self, body: dict, anthropic: bool, *, broken: bool) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            pieces = fake.pieces()
            if broken:
                pieces = pieces[: fake.pieces_before_break]
            events = (_anthropic_events if anthropic else _openai_events)(body, pieces, fake)
            for event in events:
                self.wfile.write(event.encode())
                self.wfile.flush()
            if broken:
                error = {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}
                if anthropic:
                    self.wfile.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                else:
                    payload = {"error": {"message": "stream broke", "type": "server_error"}}
                    self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()
                return
            if not anthropic:
                self.wfile.write(b"data: [DONE]\n\n")

        def _error(self, status: int, kind: str, anthropic: bool, headers=None) -> None:
            if anthropic:
                payload = {"type": "error", "error": {"type": kind, "message": kind}}
            else:
                payload = {"error": {"message": kind, "type": kind, "code": None}}
            self._send(status, json.dumps(payload).encode(), headers=headers)

        def _send(
            self,
            status: int,
            data: bytes,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _openai_events(body: dict, pieces: list[str], fake: FakeLLMServer) -> list[str]:
    def chunk(choices: list, usage: dict | None = None) -> str:
        data = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", ""),
            "choices": choices,
            "usage": usage,
        }
        return f"data: {json.dumps(data)}\n\n"

    events = [chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
    if (body.get("stream_options") or {}).get("include_usage") and len(pieces) == len(
        fake.pieces()
    ):
        events.append(
            chunk(
                [],
                {
                    "prompt_tokens": fake.input_tokens,
                    "completion_tokens": len(pieces),
                    "total_tokens": fake.input_tokens + len(pieces),
                },
            )
        )
    return events


def _anthropic_events(body: dict, pieces: list[str], fake: FakeLLMServer) -> list[str]:
    def event(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": fake.input_tokens, "output_tokens": 1},
    }
    events = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    ]
    if len(pieces) == len(fake.pieces()):
        events += [
            event("content_block_stop", {"index": 0}),
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(pieces)},
                },
            ),
            event("message_stop", {}),
        ]
    return events
