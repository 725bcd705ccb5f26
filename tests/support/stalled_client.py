"""A raw HTTP/2 gRPC client that opens calls and never reads their replies.

gRPC's own clients read into their buffers whatever the application does, so they cannot
show a stalled reader; this one announces a receive window of zero bytes, so the server
cannot send a single byte of any reply, exactly like a client that stopped reading.
"""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings


class StalledClient:
    """One connection; each call's request is sent whole, its reply never read."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self._socket = socket.create_connection((host, int(port)), timeout=5)
        self._conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self._conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
        )
        self._conn.initiate_connection()
        self._flush()

    def open(self, method: str, request: bytes, metadata: list[tuple[str, str]]) -> int:
        """Start a call of `method` (/package.Service/Method) and return its stream id."""
        stream_id = self._conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *metadata,
        ]
        self._conn.send_headers(stream_id, headers)
        self._conn.send_data(stream_id, struct.pack(">?I", False, len(request)) + request)
        self._conn.end_stream(stream_id)
        self._flush()
        return stream_id

    def status(self, stream_id: int) -> int:
        """The grpc-status a call ended with, once it ends (a refusal comes as headers only,
        which flow control does not hold back)."""
        while True:
            data = self._socket.recv(65535)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self._conn.receive_data(data):
                headers = getattr(event, "headers", None)
                if getattr(event, "stream_id", None) == stream_id and headers:
                    found = dict(headers)
                    if b"grpc-status" in found:
                        self._flush()
                        return int(found[b"grpc-status"])
            self._flush()

    def close(self) -> None:
        """Drop the connection."""
        self._socket.close()

    def _flush(self) -> None:
        self._socket.sendall(self._conn.data_to_send())
