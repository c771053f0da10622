"""The offline Open Images world over HTTP: serves a world directory and injects its faults.

This module owns `world serve`: loading `served/routes.csv`, answering every URL of the world the
way Flickr and the S3 mirror would (fates from `faults`, applied to original and thumbnail
routes; the mirror serves what it holds), the in-memory request log that also counts the attempts
transient faults need, and the truth file (every ImageID's fault). What goes on the wire for each
fault is `responses`'. It hands on `run(cfg)` for the command line and `WorldServer` /
`start` for tests and demos.
"""

from __future__ import annotations

import asyncio
import csv
import json
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from openimages_pipe.errors import InputError
from openimages_pipe.world.faults import (
    Fault,
    FaultSpec,
    describe,
    fate,
    is_transient,
    parse_fault_spec,
)
from openimages_pipe.world.layout import (
    DEFAULT_HOST,
    PLACEHOLDER_PATH,
    ROUTES_COLUMNS,
    TRUTH_FAULTS_COLUMNS,
    WORLD_JSON_REQUIRED,
    Route,
    RouteKind,
    WorldPaths,
)
from openimages_pipe.world.responses import reencode, respond

MAKE_HINT = "make one with `oi-pipe world make`"
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


def load_routes(paths: WorldPaths) -> dict[str, Route]:
    """routes.csv as URL path -> Route; a bad row fails here, naming its line and the fix."""
    if not paths.routes.is_file():
        raise InputError(f"no routes.csv: not a world directory ({MAKE_HINT})", paths.routes)
    with paths.routes.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(ROUTES_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"missing columns {sorted(missing)}", paths.routes, 1)
        routes = {}
        for row in reader:
            try:
                kind = RouteKind(row["kind"])
            except ValueError:
                valid = ", ".join(RouteKind)
                message = f"unknown route kind; valid: {valid}"
                raise InputError(message, paths.routes, reader.line_num, row["kind"]) from None
            file = paths.served / row["file"]
            routes[row["path"]] = Route(
                row["path"], row["image_id"], kind, file, row["content_type"]
            )
    return routes


def read_world_json(paths: WorldPaths) -> dict:
    """world.json, with the seed and base_url the server needs, or an InputError naming the fix."""
    try:
        world = paths.read_world_json()
    except FileNotFoundError:
        raise InputError(
            f"no world.json: not a world directory ({MAKE_HINT})", paths.root
        ) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: {e.msg}", paths.world_json, e.lineno) from None
    missing = [key for key in WORLD_JSON_REQUIRED if key not in world]
    if missing:
        raise InputError(f"missing {', '.join(missing)} ({MAKE_HINT})", paths.world_json)
    return world


class WorldState:
    """One running server's world: routes, fates, and the log of what was asked of it."""

    def __init__(self, paths: WorldPaths, spec: FaultSpec, seed: int) -> None:
        self.paths = paths
        self.spec = spec
        self.seed = seed
        self.routes = load_routes(paths)
        image_ids = sorted({route.image_id for route in self.routes.values()})
        self.fates = {image_id: fate(seed, image_id, spec) for image_id in image_ids}
        self.requests: Counter[str] = Counter()  # per URL path, so also the transient attempts
        self._changed: dict[str, bytes] = {}

    def fault_for(self, route: Route) -> Fault:
        """The fault this request meets: the image's fate until a transient fault has run out."""
        if route.kind is RouteKind.MIRROR:
            return Fault.NONE
        fault = self.fates[route.image_id]
        if is_transient(fault) and self.requests[route.path] > self.spec.transient_failures:
            return Fault.NONE
        return fault

    async def changed_bytes(self, route: Route) -> bytes:
        if route.path not in self._changed:
            data = route.file.read_bytes()
            self._changed[route.path] = await asyncio.to_thread(reencode, data)
        return self._changed[route.path]

    def write_truth(self, path: Path) -> None:
        """CSV image_id,fault,transient: every ImageID's fate, to check a download against."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(TRUTH_FAULTS_COLUMNS)
            for image_id, fault in self.fates.items():
                writer.writerow([image_id, fault.value, int(is_transient(fault))])


STATE = web.AppKey("state", WorldState)


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests[request.path] += 1
    if request.path == PLACEHOLDER_PATH:
        return web.Response(body=state.paths.placeholder.read_bytes(), content_type="image/png")
    route = state.routes.get(request.path)
    if route is None:
        raise web.HTTPNotFound()
    fault = state.fault_for(route)
    return await respond(request, route, fault, state.spec, state.changed_bytes)


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
