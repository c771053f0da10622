"""One `--num-shards` per `--out`: shares of another count split the ImageIDs otherwise, so two
runs of different counts into one folder would store some images twice; a ragged images row is
refused at its line before anything is fetched, never read with its columns shifted."""

from __future__ import annotations

import subprocess
from pathlib import Path

from openimages_pipe.download import manifest
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import cli_args
from tests.fixtures.paths import REPO
from tests.fixtures.worlds import IMAGES, shard_ids


def download(args: list[str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*args, *extra], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_second_share_count_into_one_folder_is_refused(offline_world: Path, tmp_path: Path):
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = cli_args(offline_world, out, srv.base_url)
        first = download(args, "--num-shards", "1")
        assert first.returncode == 0, first.stderr
        stored = sorted(shard_ids(out))
        refused = download(args, "--num-shards", "2", "--shard-index", "0")
        again = download(args, "--num-shards", "1")  # the folder's own count still runs
    assert len(stored) == IMAGES
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: "), lines
    assert "--num-shards 1" in lines[0] and "'--num-shards 2'" in lines[0], lines
    assert sorted(shard_ids(out)) == stored  # nothing stored twice
    assert again.returncode == 0, again.stderr
    assert manifest.load_all(out).height == IMAGES


def test_a_folder_from_before_the_marker_is_judged_by_its_file_names(
    offline_world: Path, tmp_path: Path
):
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = cli_args(offline_world, out, srv.base_url, "--limit", "6")
        first = download(args, "--num-shards", "2", "--shard-index", "1")
        (out / manifest.SHARES_FILE).unlink()  # as a folder an older oi-pipe wrote
        refused = download(args, "--num-shards", "3", "--shard-index", "1")
        other = download(args, "--num-shards", "2", "--shard-index", "0")
    assert first.returncode == 0, first.stderr
    assert refused.returncode == 1 and "--num-shards 2" in refused.stderr, refused.stderr
    assert other.returncode == 0, other.stderr
    assert (out / manifest.SHARES_FILE).read_text().strip() == "2"


def test_a_ragged_images_row_is_refused_at_its_line(tmp_path: Path) -> None:
    csv = tmp_path / "images.csv"
    csv.write_text(
        "ImageID,Subset,OriginalURL,OriginalMD5\n"
        "00000000000000a1,train,http://127.0.0.1:9/a.jpg,2bOZ0p7SdZ6obZHV3kkyRQ==\n"
        "00000000000000a2,train,http://127.0.0.1:9/b.jpg\n"  # lost its last field
    )
    out = tmp_path / "out"
    args = cli_args(tmp_path, out, "http://127.0.0.1:9")  # no world there: no CSV of its own
    done = download([*args[:4], str(csv), *args[4:]])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {csv}:3: "), lines
    assert manifest.load_all(out).height == 0
