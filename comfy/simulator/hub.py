"""The connected WebSocket clients and ComfyUI's routing rule for what each one receives.

A message addressed to a `client_id` goes only to the socket that connected with that
`clientId`; a message addressed to nobody goes to every socket. Preview frames are encoded per
socket: type 4 (with JSON metadata) for clients that announced `supports_preview_metadata`,
type 1 (bare JPEG) for the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1  # binary event: u32 event, u32 image format, image bytes
PREVIEW_IMAGE_WITH_METADATA = 4  # binary event: u32 event, u32 metadata length, JSON, image bytes
JPEG = 1


@dataclass
class Client:
    """One connected socket."""

    sid: str
    socket: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    feature_flags: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_preview_metadata(self) -> bool:
        return bool(self.feature_flags.get("supports_preview_metadata"))


def preview_frame(jpeg: bytes, metadata: dict[str, Any] | None) -> bytes:
    """Binary preview frame: type 4 when `metadata` is given, else the legacy type 1."""
    if metadata is None:
        return struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg
    encoded = json.dumps(metadata).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + jpeg


class Hub:
    """Sockets by sid; sends never raise (a vanished client is just dropped)."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def add(self, client: Client) -> None:
        self.clients[client.sid] = client
        log.info("ws client %s connected (%d open)", client.sid, len(self.clients))

    def remove(self, client: Client) -> None:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]

    def _targets(self, sid: str | None) -> list[Client]:
        if sid is None:
            return list(self.clients.values())
        client = self.clients.get(sid)
        return [client] if client is not None else []

    async def _deliver(self, client: Client, payload: str | bytes) -> None:
        try:
            if isinstance(payload, bytes):
                await client.socket.send_bytes(payload)
            else:
                await client.socket.send_str(payload)
        except (ConnectionError, RuntimeError) as exc:
            log.info("dropping ws client %s: %s", client.sid, exc)
            self.remove(client)

    async def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """A JSON message `{type, data}` to `sid`, or to everyone when `sid` is None."""
        payload = json.dumps({"type": event, "data": data})
        for client in self._targets(sid):
            await self._deliver(client, payload)

    async def send_preview(self, jpeg: bytes, metadata: dict[str, Any], sid: str | None,
                           with_metadata: bool) -> None:
        """A preview to the clients of `sid` whose flag equals `with_metadata` (called for both)."""
        for client in self._targets(sid):
            if client.wants_preview_metadata == with_metadata:
                await self._deliver(client, preview_frame(jpeg, metadata if with_metadata else None))

    async def close_all(self) -> None:
        """Graceful shutdown: close frames to every client."""
        for client in list(self.clients.values()):
            await client.socket.close(code=1001, message=b"server shutdown")
        self.clients.clear()

    def abort_all(self) -> None:
        """Killed process: connections just vanish, no close frame."""
        for client in list(self.clients.values()):
            if client.transport is not None:
                client.transport.abort()
        self.clients.clear()
