"""A source whose body fails to decode (a truncated original) is rejected like any other bad body:
the download moves on to the thumbnail and the mirror, which may hold a good copy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from openimages_pipe.download import manifest
from openimages_pipe.download.records import Source
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_duplicates import HEADER, config, run_bounded
from tests.fixtures.images import flat
from tests.fixtures.worlds import Served, shard_ids, write_world

A, B = "00000000000000b1", "00000000000000b2"


def test_a_truncated_original_falls_back_to_the_thumbnail_then_the_mirror(tmp_path: Path) -> None:
    root, base = tmp_path / "world", world_layout.base_url(port=world_layout.free_port())
    photo = flat((64, 48), (200, 40, 40))
    truncated = photo[: len(photo) // 2]  # an HTTP 200 whose body ends half-way
    served = root / "served"
    write_world(root, base, [
        Served(f"/o/{A}.jpg", A, "original", served / "o" / f"{A}.jpg", truncated, "image/jpeg"),
        Served(f"/t/{A}.jpg", A, "thumbnail", served / "t" / f"{A}.jpg", photo, "image/jpeg"),
        Served(f"/o/{B}.jpg", B, "original", served / "o" / f"{B}.jpg", truncated, "image/jpeg"),
        Served(f"/t/{B}.jpg", B, "thumbnail", served / "t" / f"{B}.jpg", truncated, "image/jpeg"),
        Served(f"/m/train/{B}.jpg", B, "mirror", served / "m" / f"{B}.jpg", photo, "image/jpeg"),
    ])  # fmt: skip
    csv = tmp_path / "images.csv"
    csv.write_text(HEADER + "".join(
        f"{i},train,{base}/o/{i}.jpg,,,,,,,,{base}/t/{i}.jpg\n" for i in (A, B)
    ))  # fmt: skip
    cfg = config(tmp_path / "out", (csv,))
    every = (Source.ORIGINAL, Source.THUMBNAIL, Source.MIRROR)
    mirror = f"{base}/m/{{subset}}/{{image_id}}.jpg"
    cfg = replace(cfg, input=replace(cfg.input, sources=every, mirror_template=mirror))
    with WorldServer(ServeConfig(world=root)) as srv:
        assert run_bounded(cfg) == 0
        tried = {p: srv.request_count(p) for p in (f"/o/{A}.jpg", f"/t/{A}.jpg", f"/o/{B}.jpg")}
    rows = {r["image_id"]: r for r in manifest.load_all(cfg.out).iter_rows(named=True)}
    assert {i: (r["status"], r["source"]) for i, r in rows.items()} == {
        A: ("ok", "thumbnail"),
        B: ("ok", "mirror"),
    }
    assert tried == {f"/o/{A}.jpg": 1, f"/t/{A}.jpg": 1, f"/o/{B}.jpg": 1}
    assert sorted(shard_ids(cfg.out)) == [A, B]
