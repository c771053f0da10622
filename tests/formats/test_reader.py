"""The reader on every release's headers, on dirty real-world files, and on what it must reject."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader, releases
from openimages_pipe.formats.reader import FileKind

IMAGE_COLUMNS_V1 = (
    "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,"
    "OriginalSize,OriginalMD5,Thumbnail300KURL"
)
LABEL_HEADER = "ImageID,Source,LabelName,Confidence"


def write(path: Path, text: str, newline: str = "\n", bom: bool = False) -> Path:
    data = text.replace("\n", newline).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def _value_for(column: str, release: releases.Release, kind: str, i: int) -> str:
    values = {
        "ImageID": f"{i:016x}",
        "Subset": "validation",
        "OriginalSize": "12345",
        "OriginalMD5": "ZJaXgdaLRYDO5F4ZbOZw7w==",
        "Rotation": "0.0",
        "LabelName": "/m/0k4j",
        "DisplayName": "Car",
        "Confidence": "1" if kind == "human_labels" else "0.7",
        "Source": (release.human_sources if kind == "human_labels" else release.machine_sources)[0],
    }
    return values.get(column, f"https://example.org/{column}/{i}")


def _sample_file(tmp_path: Path, release: releases.Release, f: releases.ReleaseFile) -> Path:
    path = tmp_path / f"{release.id}-{f.kind}-{Path(f.name).name}"
    rows = [[_value_for(c, release, f.kind, i) for c in f.columns] for i in range(3)]
    with open(path, "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        if f.header:
            w.writerow(f.columns)
        w.writerows(rows)
    return path


KINDS = ("images", "machine_labels", "human_labels", "class_descriptions", "class_list")
RELEASE_FILES = [
    pytest.param(r, f, id=f"{r.id}-{f.kind}-{f.name}")
    for r in releases.load_releases()
    for f in r.files
    if f.kind in KINDS and f.columns
]


def test_every_release_is_described() -> None:
    ids = [r.id for r in releases.load_releases()]
    assert ids == ["v1", "v2", "v3", "v4", "v5", "v6", "v7"]
    for r in releases.load_releases():
        assert r.files_of("images"), r.id


@pytest.mark.parametrize(("release", "official"), RELEASE_FILES)
def test_recognises_every_release_header(
    tmp_path: Path, release: releases.Release, official: releases.ReleaseFile
) -> None:
    info = reader.inspect_csv(_sample_file(tmp_path, release, official))
    expected = FileKind(official.kind)
    assert info.kind.family == expected.family
    if expected in (FileKind.MACHINE_LABELS, FileKind.HUMAN_LABELS):
        assert info.kind is expected
    assert release.id in info.releases
    assert info.has_header == official.header
    frame = reader.scan(info.path).collect()
    assert frame.height == 3
    assert all(c == c.lower() for c in frame.columns), "column names are normalised"


def test_v1_images_header_is_not_v6s(tmp_path: Path) -> None:
    v1 = reader.inspect_csv(write(tmp_path / "a.csv", IMAGE_COLUMNS_V1 + "\n"))
    v6 = reader.inspect_csv(write(tmp_path / "b.csv", IMAGE_COLUMNS_V1 + ",Rotation\n"))
    assert "v1" in v1.releases and "v6" not in v1.releases
    assert "v6" in v6.releases and "v1" not in v6.releases


DIRTY_IMAGES = (
    IMAGE_COLUMNS_V1 + ",Rotation\n"
    '000002b66c9c498e,train,http://a/1_o.jpg,http://l/1,lic,http://p/1,"Renée ""R"", Paris",'
    '"line one\nline two, with comma",2048,OPmxL0ey7VtcJwOQAzN0Rw==,,nan\n'
    "000002b97e5471a0,train,http://a/2_o.jpg,http://l/2,lic,http://p/2,Bob,Sunset,4096,"
    "xRsmzzHvQZGhvSLkwPo1YA==,http://t/2_z.jpg,90.0\n"
    "000002c707c9895e,train,http://a/3_o.jpg,http://l/3,lic,http://p/3,,,100,"
    "S6jKzKPEpMeKvSbtNhG5Gw==,http://t/3_z.jpg,\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_tolerates_what_real_files_contain(tmp_path: Path, newline: str, bom: bool) -> None:
    path = write(tmp_path / "images.csv", DIRTY_IMAGES, newline=newline, bom=bom)
    frame = reader.scan(path, "images").collect()
    assert frame["image_id"].to_list() == [
        "000002b66c9c498e",
        "000002b97e5471a0",
        "000002c707c9895e",
    ]
    assert frame["author"][0] == 'Renée "R", Paris'
    assert frame["title"][0].replace("\r\n", "\n") == "line one\nline two, with comma"
    assert frame["thumbnail_300k_url"][0] is None
    assert frame["rotation"].to_list() == [None, 90.0, None]
    assert frame["original_size"].dtype == pl.Int64
    assert frame["original_size"].to_list() == [2048, 4096, 100]


def _labels(rows: range, source: str = "machine") -> str:
    body = "".join(f"{i:016x},{source},/m/0k4j,0.{i % 10}\n" for i in rows)
    return LABEL_HEADER + "\n" + body


def test_several_files_mixing_lf_and_crlf_read_completely(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "a.csv", _labels(range(0, 500)), newline="\n"),
        write(tmp_path / "b.csv", _labels(range(500, 1200)), newline="\r\n"),
        write(tmp_path / "c.csv", _labels(range(1200, 1300)), newline="\n", bom=True),
    ]
    for order in (files, files[::-1]):
        frame = reader.scan(order, "labels").collect()
        assert frame.height == 1300
        assert frame["image_id"].n_unique() == 1300
        assert frame["confidence"].max() <= 0.9
        assert not frame["label_name"].str.contains("\r").any()


def test_iter_batches_streams_everything_in_bounded_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", _labels(range(2500)))
    batches = list(reader.iter_batches(reader.scan(path), rows=1000))
    assert len(batches) >= 3
    assert max(b.height for b in batches) <= 1000
    assert pl.concat(batches)["image_id"].to_list() == [f"{i:016x}" for i in range(2500)]


def test_real_v1_dict_reads_whole(tmp_path: Path) -> None:
    info = reader.inspect_csv(packaged.dict_csv())
    assert info.kind is FileKind.CLASS_DESCRIPTIONS and not info.has_header
    assert "v1" in info.releases
    names = dict(reader.read_class_descriptions(packaged.dict_csv()).iter_rows())
    assert len(names) == 7881
    assert names["/m/01c_0l"] == "ducks, geese and swans"
    assert names["/m/0132x9"] == "kakigōri"


def test_machine_and_human_labels_told_apart_by_source(tmp_path: Path) -> None:
    human = reader.inspect_csv(write(tmp_path / "h.csv", _labels(range(5), "verification")))
    machine = reader.inspect_csv(write(tmp_path / "m.csv", _labels(range(5), "machine")))
    assert (human.kind, machine.kind) == (FileKind.HUMAN_LABELS, FileKind.MACHINE_LABELS)


def _error(path: Path, kind: str | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        reader.scan(path, kind)
    assert caught.value.path == path
    return caught.value


def test_rejects_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "ImageID,Source,LabelName\n000002b66c9c498e,machine,/m/01\n")
    err = _error(path, "labels")
    assert err.line == 1 and "Confidence" in str(err) and str(path) in str(err)


def test_rejects_bad_image_id_and_names_its_line(tmp_path: Path) -> None:
    # the first row's quoted title spans two lines, so the third row starts on line 5, not 4
    text = DIRTY_IMAGES.replace("000002c707c9895e", "not-hex-at-all!!")
    err = _error(write(tmp_path / "i.csv", text, newline="\r\n", bom=True), "images")
    assert (err.line, err.value) == (5, "not-hex-at-all!!")
    assert "16 hex" in str(err) and ":5:" in str(err)


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "high", "nan"])
def test_rejects_confidence_outside_unit_interval(tmp_path: Path, bad: str) -> None:
    text = _labels(range(3)) + f"00000000000000ff,machine,/m/0k4j,{bad}\n"
    err = _error(write(tmp_path / "l.csv", text))
    assert (err.line, err.value) == (5, bad)
    assert "Confidence" in str(err)


def test_rejects_bad_original_size(tmp_path: Path) -> None:
    text = DIRTY_IMAGES.replace(",4096,", ",4k,")
    err = _error(write(tmp_path / "i.csv", text))
    assert (err.line, err.value) == (4, "4k")


def test_rejects_mixing_kinds_and_names_the_odd_file(tmp_path: Path) -> None:
    labels = write(tmp_path / "l.csv", _labels(range(3)))
    images = write(tmp_path / "i.csv", DIRTY_IMAGES)
    with pytest.raises(InputError) as caught:
        reader.scan([labels, images])
    assert caught.value.path == images


def test_rejects_unknown_header_and_empty_file(tmp_path: Path) -> None:
    assert "cannot tell" in str(_error(write(tmp_path / "x.csv", "a,b\n1,2\n")))
    assert "empty" in str(_error(write(tmp_path / "e.csv", "")))


def test_headerless_class_list(tmp_path: Path) -> None:
    path = write(tmp_path / "classes-trainable.txt", "/m/0k4j\n/m/01g317\n/m/0bt9lr\n")
    info = reader.inspect_csv(path)
    assert info.kind is FileKind.CLASS_LIST and not info.has_header
    assert reader.scan(path).collect()["label_name"].to_list() == [
        "/m/0k4j",
        "/m/01g317",
        "/m/0bt9lr",
    ]


def test_rejects_a_broken_line_and_names_it(tmp_path: Path) -> None:
    text = _labels(range(4)) + "00000000000000ff,machine,/m/0k4j,0.5,extra,fields\n"
    err = _error(write(tmp_path / "l.csv", text))
    assert err.line == 6 and "6 fields" in str(err)
