"""The offline Open Images world over HTTP: serves a world directory and injects its faults.

This module owns `world serve`: answering every URL of the world the way Flickr and the S3 mirror
would (fates from `faults`, applied to original and thumbnail routes; the mirror serves what it
holds), binding the port the world's URLs were written for, and running the server until Ctrl-C or
on a background thread for tests. The loaded world, its fates, the request log and the truth file
are `state`'s; what goes on the wire for each fault is `responses`'. It hands on `run(cfg)` for the
command line and `WorldServer` / `start` for tests and demos.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from openimages_pipe.errors import InputError
from openimages_pipe.world.faults import Fault, describe, parse_fault_spec
from openimages_pipe.world.layout import DEFAULT_HOST, PLACEHOLDER_PATH, WorldPaths
from openimages_pipe.world.responses import respond
from openimages_pipe.world.state import WorldState, read_world_json

# In-flight fault handlers (stalls, huge bodies) are cut off after this on shutdown: nothing a
# fault sends is worth waiting for, and a test server must stop promptly.
SHUTDOWN_TIMEOUT_S = 1.0
# How long the test helper waits for its background loop to start or stop the server.
THREAD_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class ServeConfig:
    """`world serve`: which world, where, and with which faults."""

    world: Path
    host: str = DEFAULT_HOST
    port: int | None = None  # None: the port of world.json's base_url (the CSVs' URLs); 0: any
    faults: str = "none"
    fault_seed: int | None = None  # None: world.json's seed
    # Where to write image_id,fault,transient at startup; None: nowhere. The documented place is
    # the world's WorldPaths.truth_faults (truth/faults.csv).
    truth: Path | None = None


STATE = web.AppKey("state", WorldState)


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.arrived(request.host, request.path)
    try:
        if request.path == PLACEHOLDER_PATH:
            body = state.paths.placeholder.read_bytes()
            return web.Response(body=body, content_type="image/png")
        route = state.routes.get(request.path)
        if route is None:
            raise web.HTTPNotFound()
        fault = state.fault_for(route)
        return await respond(request, route, fault, state.spec, state.changed_bytes)
    finally:
        state.in_flight[request.host] -= 1


def build_app(state: WorldState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/{tail:.*}", _handle, allow_head=False)
    return app


def world_state(cfg: ServeConfig) -> WorldState:
    """The world of `cfg`, with its fault spec parsed and its seed resolved."""
    paths = WorldPaths(cfg.world)
    try:
        spec = parse_fault_spec(cfg.faults)
    except ValueError as e:
        raise InputError(str(e)) from None
    seed = cfg.fault_seed if cfg.fault_seed is not None else int(read_world_json(paths)["seed"])
    return WorldState(paths, spec, seed)


def world_port(cfg: ServeConfig) -> int:
    """The port to bind: the configured one, or the one the world's URLs were written for."""
    if cfg.port is not None:
        return cfg.port
    paths = WorldPaths(cfg.world)
    world_url = read_world_json(paths)["base_url"]
    port = URL(world_url).port
    if port is None:
        raise InputError("base_url has no port: choose one", paths.world_json, value=world_url)
    return port


async def start(cfg: ServeConfig) -> web.AppRunner:
    """Serve `cfg` on the running loop (truth written first); `runner.app[STATE]` is its world."""
    state, port = world_state(cfg), world_port(cfg)
    if cfg.truth is not None:
        state.write_truth(cfg.truth)
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.host, port).start()
    except OSError as exc:
        await runner.cleanup()
        where = f"{cfg.host}:{port}"
        message = f"cannot serve on {where} ({exc.strerror or exc}): choose another port"
        raise InputError(message) from None
    return runner


def runner_base_url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return str(URL.build(scheme="http", host=host, port=port))


async def _serve_forever(cfg: ServeConfig) -> None:
    runner = await start(cfg)
    try:
        state = runner.app[STATE]
        url = runner_base_url(runner)
        print(f"serving {cfg.world} at {url} (fault seed {state.seed}); Ctrl-C stops")
        print(describe(state.spec))
        world_url = read_world_json(state.paths)["base_url"]
        if URL(world_url).port != URL(url).port:
            print(f"warning: the world's URLs point at {world_url}, not here")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(cfg: ServeConfig) -> None:
    """Serve the world until Ctrl-C."""
    try:
        asyncio.run(_serve_forever(cfg))
    except KeyboardInterrupt:
        print("stopped")


async def _cancel_remaining_tasks() -> None:
    """Handlers still sleeping in a stall or slow first byte end here, not as destroyed tasks."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class WorldServer:
    """The server on a background thread with its own loop, as a context manager for tests.

    One use per instance: `with WorldServer(cfg) as srv: get(srv.base_url + path)`.
    """

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> WorldServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="world-server")
        self._thread.start()
        try:
            self._runner = self._call(start(self.cfg))
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._runner is not None:
                self._call(self._runner.cleanup())
            self._call(_cancel_remaining_tasks())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(THREAD_TIMEOUT_S)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(THREAD_TIMEOUT_S)
        self._loop.close()

    @property
    def state(self) -> WorldState:
        assert self._runner is not None, "use WorldServer as a context manager"
        return self._runner.app[STATE]

    @property
    def base_url(self) -> str:
        assert self._runner is not None, "use WorldServer as a context manager"
        return runner_base_url(self._runner)

    @property
    def fates(self) -> dict[str, Fault]:
        return dict(self.state.fates)

    def request_count(self, path: str) -> int:
        return self.state.requests[path]

    def write_truth(self, path: Path) -> None:
        self.state.write_truth(path)
