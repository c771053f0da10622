"""CSV dirt always names the file and the line: a huge field, bad UTF-8 late in a file, a ragged
row (never taken with its columns shifted), and quoted fields across lines that are not dirt."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader

HEADER = "ImageID,Subset,OriginalURL,Title\n"
runner = CliRunner()


def rows(n: int, start: int = 0) -> str:
    return "".join(f"{i:016x},train,https://x.org/{i}.jpg,photo {i}\n" for i in range(start, n))


def _refused(path: Path) -> InputError:
    with pytest.raises(InputError) as error:
        reader.scan(path, "images").collect()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path}:{error.value.line}:" in result.output
    return error.value


def test_a_huge_field_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "images.csv"
    path.write_text(
        HEADER + rows(3) + f"00000000000000ff,train,https://x.org/a.jpg,{'x' * 5_000_000}\n"
    )
    error = _refused(path)
    assert (error.line, error.path) == (
        5,
        path,
    ) and "field larger than field limit" in error.message


def test_bad_utf8_late_in_a_file_is_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "images.csv"
    path.write_bytes(
        (HEADER + rows(5000)).encode() + b"00000000000fffff,train,https://x.org/\xff.jpg,t\n"
    )
    error = _refused(path)
    assert error.line == 5002 and error.message.startswith("not UTF-8 text")


@pytest.mark.parametrize("fields", [3, 5])
def test_a_ragged_row_is_refused_at_its_line(tmp_path: Path, fields: int) -> None:
    cells = ["00000000000000ab", "train", "https://x.org/ab.jpg", "a title", "extra"][:fields]
    path = tmp_path / "images.csv"
    path.write_text(HEADER + rows(30) + ",".join(cells) + "\n" + rows(40, 30))
    error = _refused(path)
    assert (
        error.line == 32
        and error.message == f"malformed CSV: {fields} fields where the header has 4"
    )


def test_quoted_commas_and_newlines_are_not_ragged(tmp_path: Path) -> None:
    path = tmp_path / "images.csv"
    path.write_text(HEADER + '00000000000000a1,train,https://x.org/1.jpg,"a, b\nc, d"\n' + rows(3))
    assert reader.scan(path, "images").collect()["title"][0] == "a, b\nc, d"
    bad = tmp_path / "bad.csv"  # the same, then a short record after it
    bad.write_text(path.read_text() + "00000000000000a9,train\n")
    assert _refused(bad).line == 7
