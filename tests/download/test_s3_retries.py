"""The signed S3 requests (`s3.S3Client`: the share lock, `.num-shards`) try again when the store
answers 5xx or drops the connection, as the AWS SDKs do for InternalError and SlowDown; and a
conditional PUT whose first try landed although its answer was a 500 is recognised by the lease
as its own (412, then a GET of its own body), not taken for another run's lock.

The store is a small aiohttp server on 127.0.0.1 that keeps objects, honours If-None-Match and
If-Match, and fails the requests a test scripts: SeaweedFS cannot be told to fail on cue.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from openimages_pipe.download import lease, s3
from openimages_pipe.errors import InputError

URL = s3.ObjectUrl("bucket", "oi/.lock-00000-of-00001")


class FlakyStore:
    """Objects by path; `faults` is consumed one per request: None (answer), "fail" (a 500,
    nothing done) or "lose" (do it, then answer 500 as if the reply were lost)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.faults: list[str | None] = []
        self.seen: list[tuple[str, int]] = []

    async def handle(self, request: web.Request) -> web.Response:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "fail":
            return self._answer(request, web.Response(status=500, text="<Error>InternalError"))
        reply = self._apply(request, await request.read())
        return self._answer(request, web.Response(status=500) if fault == "lose" else reply)

    def _answer(self, request: web.Request, reply: web.Response) -> web.Response:
        self.seen.append((request.method, reply.status))
        return reply

    def _apply(self, request: web.Request, body: bytes) -> web.Response:
        path, there = request.path, self.objects.get(request.path)
        etag = f'"{hashlib.md5(there).hexdigest()}"' if there is not None else None
        if request.method == "GET":
            if there is None:
                return web.Response(status=404)
            return web.Response(body=there, headers={"ETag": etag})
        if request.headers.get("If-None-Match") == "*" and there is not None:
            return web.Response(status=412)
        if "If-Match" in request.headers and request.headers["If-Match"] != etag:
            return web.Response(status=412)
        self.objects[path] = body
        return web.Response(headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})


@pytest.fixture
def store() -> Iterator[tuple[FlakyStore, s3.S3Client]]:
    flaky, loop = FlakyStore(), asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", flaky.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    creds = s3.Credentials("key", "secret", None, "us-east-1", f"http://127.0.0.1:{port}")
    try:
        yield flaky, s3.S3Client(creds)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_5xx_is_tried_again(store) -> None:
    flaky, client = store
    flaky.faults = ["fail", "fail"]
    assert client.put(URL, b"x", if_none_match=True).status == 200
    assert flaky.seen == [("PUT", 500), ("PUT", 500), ("PUT", 200)]
    assert flaky.objects == {f"/bucket/{URL.key}": b"x"}


def test_a_store_that_keeps_failing_is_an_error_after_the_retries(store) -> None:
    flaky, client = store
    flaky.faults = ["fail"] * 10
    with pytest.raises(s3.S3Error, match="HTTP 500"):
        client.get(URL)
    assert len(flaky.seen) == 1 + s3.RETRIES


def test_a_lease_whose_first_put_landed_unanswered_is_ours(store) -> None:
    flaky, client = store
    flaky.faults = ["lose"]
    held = lease.Lease(client, URL, "share in use", "s3://bucket/oi")
    held.acquire()
    try:
        assert flaky.seen == [("PUT", 500), ("PUT", 412), ("GET", 200)]
        assert held.etag == f'"{hashlib.md5(held.body).hexdigest()}"'
        other = lease.Lease(client, URL, "share in use", "s3://bucket/oi")
        with pytest.raises(InputError, match="share in use"):  # a second run is still refused
            other.acquire()
    finally:
        held.release()
