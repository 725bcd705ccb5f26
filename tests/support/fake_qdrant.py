"""A local HTTP server speaking the part of Qdrant's REST API that snapshots use.

No Qdrant server binary exists on these machines. This one keeps a collection as a list of
points, serialises it as its "snapshot" file, and can be told to fail like a server that is
down. It checks the api-key header as a server with one configured would.
"""

from __future__ import annotations

import json
import re
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler

from tests.support.local_http import LocalHTTPServer, QuietHandler

MAGIC = b"FAKE-QDRANT-SNAPSHOT\n"


class FakeQdrant(LocalHTTPServer):
    """One collection's points, its snapshots, and a switch to fail every call."""

    def __init__(self, collection: str, api_key: str = "") -> None:
        self.collection = collection
        self.api_key = api_key
        self.points: list[dict] = []
        self.snapshots: dict[str, bytes] = {}
        self.down = False
        self.requests: list[str] = []  # "METHOD path", in order
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        super().__init__(Handler)

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append(f"{method} {path}")
        body = request.rfile.read(int(request.headers.get("content-length") or 0))
        if self.down:
            return _reply(request, 503, {"status": {"error": "service unavailable"}})
        if self.api_key and request.headers.get("api-key") != self.api_key:
            return _reply(request, 403, {"status": {"error": "invalid api key"}})
        base = f"/collections/{self.collection}"
        if method == "GET" and path == "/":
            return _reply(request, 200, {"title": "qdrant", "version": "1.20.0"})
        if method == "POST" and path == f"{base}/points/count":
            return _ok(request, {"count": len(self.points)})
        if method == "POST" and path == f"{base}/snapshots":
            name = f"{self.collection}-{uuid.uuid4().hex[:8]}.snapshot"
            self.snapshots[name] = MAGIC + json.dumps(self.points).encode()
            size = len(self.snapshots[name])
            return _ok(request, {"name": name, "creation_time": None, "size": size})
        if method == "POST" and path == f"{base}/snapshots/upload":
            data = _multipart_file(request.headers["content-type"], body)
            if not data.startswith(MAGIC):
                return _reply(request, 400, {"status": {"error": "not a snapshot"}})
            self.points = json.loads(data[len(MAGIC) :])
            return _ok(request, True)
        match = re.fullmatch(rf"{base}/snapshots/([^/]+)", path)
        if match and match[1] in self.snapshots:
            if method == "GET":
                request.send_response(200)
                request.send_header("content-length", str(len(self.snapshots[match[1]])))
                request.end_headers()
                request.wfile.write(self.snapshots[match[1]])
                return None
            if method == "DELETE":
                del self.snapshots[match[1]]
                return _ok(request, True)
        return _reply(request, 404, {"status": {"error": "not found"}})


def _ok(request: BaseHTTPRequestHandler, result) -> None:
    _reply(request, 200, {"result": result, "status": "ok", "time": 0.0})


def _reply(request: BaseHTTPRequestHandler, code: int, payload) -> None:
    data = json.dumps(payload).encode()
    request.send_response(code)
    request.send_header("content-type", "application/json")
    request.send_header("content-length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def _multipart_file(content_type: str, body: bytes) -> bytes:
    message = BytesParser(policy=HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "snapshot":
            return part.get_payload(decode=True)
    return b""
