"""The read stage on genuine Open Images layouts: `--subset` where V1's first layout has no Subset
column, and V1 validation images, which the mirror keeps under validation/ or test/."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import manifest
from openimages_pipe.download import pipeline as download
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.records import Md5Mode, Source
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.errors import InputError
from openimages_pipe.formats import releases
from openimages_pipe.packaged import manifests_dir
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.images import flat
from tests.fixtures.worlds import Served, write_world

# V1's first images.csv layout (README.md@b4215ce, 2016-09-28; as in
# shared/data/openimages-real/v1/images-2016-09-28-readme.csv): no Subset column.
FIRST_V1 = (
    "ImageID,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title\n"
    '000060e3121c7305,"https://c1.staticflickr.com/5/4129/5215831864_46f356962f_o.jpg",'
    '"https://www.flickr.com/photos/brokentaco/5215831864",'
    '"https://creativecommons.org/licenses/by/2.0/","https://www.flickr.com/people/brokentaco/",'
    '"David","28 Nov 2010 Our new house."\n'
)
# V1's released layout (images_2016_08_v5, READMEV1.md), which V2 and V3 kept.
V1_HEADER = (
    "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,"
    "OriginalSize,OriginalMD5,Thumbnail300KURL\n"
)
# V4's (shared/data/openimages-real/v4/validation-images-with-rotation-1row.csv): V2+ subsets.
V4_VALIDATION = (
    V1_HEADER.strip() + ",Rotation\n"
    "fe600639ac5f36c1,validation,https://farm2.staticflickr.com/5612/15340259497_dd0f22ebf2_o.jpg,"
    "https://www.flickr.com/photos/118815643@N04/15340259497,"
    "https://creativecommons.org/licenses/by/2.0/,https://www.flickr.com/people/118815643@N04/,"
    "LabHacker CD,_GUT6674,242145,0jBpbNION09+r02xkTIBcA==,"
    "https://c8.staticflickr.com/6/5612/15340259497_6b4323bab9_z.jpg,\n"
)
VALIDATION_ID, TRAIN_ID = "0a1b2c3d4e5f6071", "1a1b2c3d4e5f6071"
MIRROR = "http://m/{subset}/{image_id}.jpg"


def read_tasks(cfg: InputConfig) -> list:
    empty = manifest.read_files([])
    return [
        t
        for b in download_input.iter_batches(cfg, empty.select("image_id"), empty)
        for t in b.tasks
    ]


def v1_csv(path: Path, base: str = "http://o") -> Path:
    path.write_text(
        V1_HEADER
        + f"{VALIDATION_ID},validation,{base}/gone/{VALIDATION_ID}.jpg,,,,,,,,\n"
        + f"{TRAIN_ID},train,{base}/gone/{TRAIN_ID}.jpg,,,,,,,,\n"
    )
    return path


def test_subset_on_a_csv_without_a_subset_column_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    first = tmp_path / "images.csv"
    first.write_text(FIRST_V1)
    with_subset = v1_csv(tmp_path / "validation.csv")
    cfg = InputConfig(csvs=(with_subset, first), subsets=("validation",))
    with pytest.raises(InputError) as caught:
        read_tasks(cfg)
    assert caught.value.path == first and "Subset column" in str(caught.value)
    assert [t.image_id for t in read_tasks(InputConfig(csvs=(first,)))] == ["000060e3121c7305"]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["download", str(first), "--out", str(out), "--subset", "validation", "--quiet"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert str(first) in line and "--subset" in line


RELEASES = {r.id: r for r in releases.load_releases()}


def test_v1_validation_rows_try_the_mirror_folders_of_the_manifests_subset_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = tomllib.loads((manifests_dir() / "v1.toml").read_text(encoding="utf-8"))
    folders = v1["mirror"]["subset_map"]["validation"]
    assert folders == ["validation", "test"]  # what V2 did to V1's validation set
    v4 = tmp_path / "validation-images-with-rotation.csv"
    v4.write_text(V4_VALIDATION)
    cfg = InputConfig(csvs=(v1_csv(tmp_path / "v1.csv"), v4), mirror_template=MIRROR)

    def mirrors(tasks: list) -> dict[str, list[str]]:
        return {
            t.image_id: [c.url for c in t.candidates if c.source is Source.MIRROR] for t in tasks
        }

    assert mirrors(read_tasks(cfg)) == {
        VALIDATION_ID: [MIRROR.format(subset=f, image_id=VALIDATION_ID) for f in folders],
        TRAIN_ID: [MIRROR.format(subset="train", image_id=TRAIN_ID)],
        "fe600639ac5f36c1": [MIRROR.format(subset="validation", image_id="fe600639ac5f36c1")],
    }
    # V1's 8-column layout of 2016-10-02 (README.md@73ceaae), which no manifest records: V1's too
    early = tmp_path / "early.csv"
    early.write_text(
        "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title\n"
        f"{VALIDATION_ID},validation,http://o/{VALIDATION_ID}.jpg,,,,,\n"
    )
    assert mirrors(read_tasks(InputConfig(csvs=(early,), mirror_template=MIRROR))) == {
        VALIDATION_ID: [MIRROR.format(subset=f, image_id=VALIDATION_ID) for f in folders]
    }
    # the map is data: another manifest, other folders
    v1_release = releases.release("v1")
    other = dataclasses.replace(v1_release, subset_map={"validation": ("x",)})
    monkeypatch.setattr(releases, "release", lambda r: other if r == "v1" else RELEASES[r])
    assert mirrors(read_tasks(cfg))[VALIDATION_ID] == [
        MIRROR.format(subset="x", image_id=VALIDATION_ID),
        MIRROR.format(subset="validation", image_id=VALIDATION_ID),  # v2's and v3's: its own
    ]


@pytest.mark.parametrize("processes", [1, 2], ids=["in-process", "2-fetch-processes"])
def test_v1_validation_image_found_only_in_the_mirrors_test_folder_is_downloaded(
    tmp_path: Path, processes: int
) -> None:
    root, base = tmp_path / "world", world_layout.base_url(port=world_layout.free_port())
    in_test = world_layout.MIRROR_PATH_TEMPLATE.format(subset="test", image_id=VALIDATION_ID)
    write_world(root, base, [
        Served(in_test, VALIDATION_ID, "mirror", root / "served" / "mirror" / "test" / "v.jpg",
               flat((64, 48), "olive"), "image/jpeg"),
    ])  # fmt: skip
    cfg = download.DownloadConfig(
        out=tmp_path / "out",
        input=InputConfig(
            csvs=(v1_csv(tmp_path / "images.csv", base),),
            mirror_template=world_layout.mirror_template(base),
        ),
        fetch=FetchConfig(allow_private=True, retries=0, md5=Md5Mode.OFF),
        workers=processes,
        processes=processes,
        quiet=True,
    )
    with WorldServer(ServeConfig(world=root)) as srv:
        download.run(cfg)
        in_validation = in_test.replace("/test/", "/validation/")
        assert srv.request_count(in_validation) == 1  # tried first, in the manifest's order
    rows = {r["image_id"]: r for r in manifest.load_all(tmp_path / "out").iter_rows(named=True)}
    found = rows[VALIDATION_ID]
    assert (found["status"], found["source"], found["url"]) == ("ok", "mirror", base + in_test)
    assert (rows[TRAIN_ID]["status"], rows[TRAIN_ID]["reason"]) == ("missing", "http_404")
