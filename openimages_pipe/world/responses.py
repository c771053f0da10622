"""What `world serve` sends for each fault: the HTTP side of the table in `faults`.

This module owns the bytes on the wire for one request whose fault is already decided: the file
itself, an error status, a redirect (to the placeholder or round a loop), a slow, stalled,
truncated or reset body, an HTML page, a re-encoded picture (`reencode`) and an endless chunked
body. It holds no state: `server` decides the fault, counts requests and caches re-encodes,
and hands `respond` the route, the fault spec and a way to get the re-encoded bytes.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import assert_never

from aiohttp import web
from PIL import Image

from openimages_pipe.world.faults import Fault, FaultSpec
from openimages_pipe.world.layout import PLACEHOLDER_PATH, Route

LOOP_QUERY = "loop"
CHANGED_JPEG_QUALITY = 70
HUGE_CHUNK = bytes(range(256)) * 256  # 64 KiB, reused: a huge body is never held in memory
JPEG_HEAD = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")  # SOI + JFIF APP0
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Flickr: Page Not Found</title></head>"
    b"<body><h1>This page is private or has been removed.</h1></body></html>"
)
STATUS = {
    Fault.HTTP_404: 404,
    Fault.HTTP_410: 410,
    Fault.HTTP_403: 403,
    Fault.HTTP_500: 500,
    Fault.HTTP_503: 503,
}


def reencode(data: bytes) -> bytes:
    """The same picture in other bytes, as a CDN re-encode makes it: decodable, new MD5 and size."""
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        if img.format == "JPEG":
            img.save(out, "JPEG", quality=CHANGED_JPEG_QUALITY)
        else:
            img.save(out, img.format or "PNG", optimize=True)
    changed = out.getvalue()
    # A re-encode can reproduce its input's size or bytes; bytes after the end marker are ignored
    # by decoders, so padding keeps the picture while making the difference certain.
    if len(changed) == len(data):
        changed += b"\0" * 16
    return changed


def file_response(route: Route) -> web.Response:
    # World files are small; reading them on the loop costs less than a thread hop.
    return web.Response(body=route.file.read_bytes(), content_type=route.content_type)


async def respond(
    request: web.Request,
    route: Route,
    fault: Fault,
    spec: FaultSpec,
    changed_bytes: Callable[[Route], Awaitable[bytes]],
) -> web.StreamResponse:
    """What the server does for each fault: the table in `faults`, row by row."""
    match fault:
        case Fault.NONE:
            return file_response(route)
        case Fault.HTTP_404 | Fault.HTTP_410 | Fault.HTTP_403 | Fault.HTTP_500 | Fault.HTTP_503:
            return web.Response(status=STATUS[fault])
        case Fault.HTTP_429:
            return web.Response(status=429, headers={"Retry-After": str(spec.retry_after)})
        case Fault.PLACEHOLDER:
            raise web.HTTPFound(PLACEHOLDER_PATH)
        case Fault.REDIRECT_LOOP:
            looped = LOOP_QUERY in request.query
            raise web.HTTPFound(route.path if looped else f"{route.path}?{LOOP_QUERY}=1")
        case Fault.SLOW_FIRST_BYTE:
            await asyncio.sleep(spec.slow_seconds)
            return file_response(route)
        case Fault.STALL:
            return await _send_half(request, route, spec.stall_seconds)
        case Fault.TRUNCATED:
            return await _send_half(request, route, None)
        case Fault.RESET:
            return _reset(request)
        case Fault.HTML:
            return web.Response(body=HTML_PAGE, content_type="text/html", charset="utf-8")
        case Fault.CHANGED:
            body = await changed_bytes(route)
            return web.Response(body=body, content_type=route.content_type)
        case Fault.HUGE:
            return await _send_huge(request, spec.huge_bytes)
        case _:
            assert_never(fault)


async def _send_half(
    request: web.Request, route: Route, pause_s: float | None
) -> web.StreamResponse:
    """Half the body under the full Content-Length, then the rest after `pause_s`, or a close."""
    body = route.file.read_bytes()
    resp = web.StreamResponse(headers={"Content-Type": route.content_type})
    resp.content_length = len(body)
    try:
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        if pause_s is None:
            if request.transport is not None:
                request.transport.close()  # flushes the half already written, then FIN
        else:
            await asyncio.sleep(pause_s)
            await resp.write(body[len(body) // 2 :])
    except ConnectionError:
        pass  # the client hung up mid-body, which is what these faults provoke
    return resp  # aiohttp drops a response to a closed connection quietly


def _reset(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns the close into an RST, as when an overloaded edge drops a connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)  # never sent: aiohttp drops it quietly, the transport is gone


async def _send_huge(request: web.Request, size: int) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    resp.enable_chunked_encoding()  # no Content-Length: only a size cap while reading stops it
    try:
        await resp.prepare(request)
        await resp.write(JPEG_HEAD)
        sent = len(JPEG_HEAD)
        while sent < size:
            await resp.write(HUGE_CHUNK)  # waits for the client to drain: memory stays flat
            sent += len(HUGE_CHUNK)
    except ConnectionError:
        pass  # the client stopped reading and hung up: the expected end of a huge body
    return resp
