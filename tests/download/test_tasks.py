"""The read stage: which rows a run takes, and the tasks they become."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from openimages_pipe.download import manifest
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.records import Source
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.errors import InputError

HEADER = (
    "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,"
    "OriginalSize,OriginalMD5,Thumbnail300KURL,Rotation\n"
)


def images_csv(tmp_path: Path, ids: list[str], name: str = "images.csv") -> Path:
    lines = [
        f"{i},{'train' if n % 2 else 'validation'},http://o/{i}_o.jpg,,,,,,{100 + n},"
        f"bWQ1,{'' if n % 3 == 0 else f'http://t/{i}_z.jpg'},{'90.0' if n == 1 else 'nan'}\n"
        for n, i in enumerate(ids)
    ]
    path = tmp_path / name
    path.write_text(HEADER + "".join(lines))
    return path


IDS = [f"{n:016x}" for n in range(40)]
EMPTY = pl.DataFrame(schema=manifest.POLARS_SCHEMA)


def tasks(cfg: InputConfig, prior: pl.DataFrame = EMPTY, retry_missing: bool = False) -> list:
    done = manifest.done_ids(prior, retry_missing)
    return [t for b in download_input.iter_batches(cfg, done, prior) for t in b.tasks]


def test_candidates_in_source_order_and_task_fields(tmp_path: Path) -> None:
    cfg = InputConfig(
        csvs=(images_csv(tmp_path, IDS[:3]),), mirror_template="http://m/{subset}/{image_id}.jpg"
    )
    got = tasks(cfg)
    assert [t.image_id for t in got] == IDS[:3]
    first, second = got[0], got[1]
    assert [c.source for c in first.candidates] == [Source.ORIGINAL, Source.MIRROR]  # no thumb
    assert [c.url for c in second.candidates] == [
        f"http://o/{IDS[1]}_o.jpg",
        f"http://t/{IDS[1]}_z.jpg",
        f"http://m/train/{IDS[1]}.jpg",
    ]
    assert (second.rotation, first.rotation) == (90.0, None)
    assert (second.original_size, second.original_md5) == (101, "bWQ1")
    only_mirror = tasks(InputConfig(csvs=cfg.csvs, sources=(Source.MIRROR, Source.ORIGINAL)))
    assert only_mirror[1].candidates[0].source is Source.MIRROR


def test_shares_partition_the_ids_exactly(tmp_path: Path) -> None:
    csv = images_csv(tmp_path, IDS)
    shares = [
        {t.image_id for t in tasks(InputConfig(csvs=(csv,), share_index=i, share_count=3))}
        for i in range(3)
    ]
    assert set().union(*shares) == set(IDS)
    assert sum(len(s) for s in shares) == len(IDS)
    assert all(int(i, 16) % 3 == k for k, s in enumerate(shares) for i in s)


def test_subset_limit_and_ids(tmp_path: Path) -> None:
    csv = images_csv(tmp_path, IDS)
    assert {t.subset for t in tasks(InputConfig(csvs=(csv,), subsets=("train",)))} == {"train"}
    assert [t.image_id for t in tasks(InputConfig(csvs=(csv,), limit=5))] == IDS[:5]
    ids = tmp_path / "ids.txt"
    ids.write_text("ImageID\n" + IDS[7].upper() + "\n" + IDS[3] + "\n")
    assert sorted(t.image_id for t in tasks(InputConfig(csvs=(csv,), ids_file=ids))) == sorted(
        [IDS[3], IDS[7]]
    )


def test_rerun_skips_done_and_missing_unless_asked(tmp_path: Path) -> None:
    csv = images_csv(tmp_path, IDS[:4])
    prior = (
        pl.DataFrame(
            {"image_id": IDS[:3], "status": ["ok", "missing", "failed"], "attempts": [1, 2, 3]}
        )
        .with_columns(
            pl.lit(None).alias(c)
            for c in manifest.POLARS_SCHEMA
            if c not in ("image_id", "status", "attempts")
        )
        .cast(manifest.POLARS_SCHEMA)
        .select(manifest.POLARS_SCHEMA.names())
    )
    cfg = InputConfig(csvs=(csv,))
    assert [t.image_id for t in tasks(cfg, prior)] == [IDS[2], IDS[3]]
    assert [t.image_id for t in tasks(cfg, prior, retry_missing=True)] == IDS[1:4]


def test_invalid_image_ids_are_reported_not_fetched(tmp_path: Path) -> None:
    csv = images_csv(tmp_path, [IDS[0], "../../etc/passwd", IDS[1]])
    batches = list(
        download_input.iter_batches(InputConfig(csvs=(csv,)), EMPTY.select("image_id"), EMPTY)
    )
    assert [t.image_id for b in batches for t in b.tasks] == IDS[:2]
    assert [i for b in batches for i in b.invalid_ids] == ["../../etc/passwd"]


def test_broken_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    csv = images_csv(tmp_path, IDS[:3])
    csv.write_text(csv.read_text() + f"{IDS[5]},train,http://o/x,,,,,,1,m,,0,extra,fields\n")
    with pytest.raises(InputError) as caught:
        list(download_input.iter_batches(InputConfig(csvs=(csv,)), EMPTY.select("image_id"), EMPTY))
    assert (caught.value.path, caught.value.line) == (csv, 5)


def test_bad_ids_file_names_its_line(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{IDS[0]}\nnot-an-id\n")
    with pytest.raises(InputError) as caught:
        download_input.read_ids(ids)
    assert (caught.value.line, caught.value.value) == (2, "not-an-id")
