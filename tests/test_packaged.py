"""oi-pipe's own data files are found in a checkout and in the wheel a user installs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from openimages_pipe import packaged
from tests.fixtures.paths import MANIFESTS


def test_a_checkout_reads_the_manifests_beside_the_package() -> None:
    assert packaged.manifests_dir() == MANIFESTS
    assert packaged.dict_csv() == MANIFESTS / "dict.csv" and packaged.dict_csv().is_file()


def _run(command: list, cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_wheel_makes_a_world_and_runs_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    # The wheel is built as `pip wheel` builds it, without the network (hatchling is a dev
    # dependency), and installed alone into a fresh venv. Its dependencies come from this venv's
    # site-packages through a .pth line: site-packages added that way is not itself scanned for
    # .pth files, so this checkout's editable install stays invisible to the fresh venv.
    repo = MANIFESTS.parent
    _run([sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "dist"), "-q"], tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("oi_pipe-*.whl")
    env = tmp_path / "env"
    _run([sys.executable, "-m", "venv", str(env)], tmp_path)
    python = env / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path
    )
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib], tmp_path).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run([str(python), "-c", "import openimages_pipe.packaged as p; print(p.dict_csv())"],
                 tmp_path)  # fmt: skip
    assert Path(where.strip()).is_relative_to(site) and Path(where.strip()).is_file()
    oi_pipe = str(env / "bin" / "oi-pipe")
    _run([oi_pipe, "world", "make", str(tmp_path / "world"), "--images", "20"], tmp_path)
    assert (tmp_path / "world" / "data" / "dict.csv").is_file()
    out = _run([oi_pipe, "demo", str(tmp_path / "demo"), "--images", "40", "--no-learn"], tmp_path)
    assert "build-splits" in out and (tmp_path / "demo" / "splits" / "splits.json").is_file()
