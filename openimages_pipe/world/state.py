"""What a running world server knows: its routes, every image's fate, and what was asked of it.

This module owns loading a world for serving (`served/routes.csv` and `world.json`, each bad file
an `InputError` naming the fix), the fates `faults` draws for every ImageID, the in-memory request
log that also counts the attempts transient faults need (and, per Host, the requests being
answered at once and the most there ever were, for tests of a client's per-host limit), the
re-encoded bytes of changed photos, and the truth file (every ImageID's fault). Answering HTTP
with it is `server`'s.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter
from pathlib import Path

from openimages_pipe.errors import InputError
from openimages_pipe.world.faults import Fault, FaultSpec, fate, is_transient
from openimages_pipe.world.layout import (
    ROUTES_COLUMNS,
    TRUTH_FAULTS_COLUMNS,
    WORLD_JSON_REQUIRED,
    Route,
    RouteKind,
    WorldPaths,
)
from openimages_pipe.world.responses import reencode

MAKE_HINT = "make one with `oi-pipe world make`"


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
        self.in_flight: Counter[str] = Counter()  # per Host header: requests being answered now
        self.peak_in_flight: Counter[str] = Counter()  # per Host: the most answered at once
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), URL path) per request
        self._changed: dict[str, bytes] = {}

    def arrived(self, host: str, path: str) -> None:
        """Log a request; the handler takes it off `in_flight` once answered."""
        self.requests[path] += 1
        self.arrivals.append((time.monotonic(), path))
        self.in_flight[host] += 1
        self.peak_in_flight[host] = max(self.peak_in_flight[host], self.in_flight[host])

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
