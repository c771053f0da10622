"""The import rules hold on the project, and the checker finds each of them broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.import_rules import violations
from tests.fixtures.paths import REPO


def test_the_project_keeps_every_import_rule() -> None:
    assert violations(REPO) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    base = {
        "openimages_pipe/__init__.py": "",
        "openimages_pipe/errors.py": "",
        "openimages_pipe/formats/__init__.py": "",
        "openimages_pipe/formats/reader.py": "import polars\n",
        "openimages_pipe/formats/checks.py": "",
        "openimages_pipe/download/__init__.py": "",
        "openimages_pipe/download/resize.py": "import PIL\n",
        "openimages_pipe/download/worker.py": "from openimages_pipe.download import resize\n",
        "openimages_pipe/download/fetch.py": "import aiohttp\n",
        "openimages_pipe/splits/__init__.py": "",
        "openimages_pipe/world/__init__.py": "",
        "openimages_pipe/world/layout.py": "",
        "openimages_pipe/cli/__init__.py": "import typer\n",
        "openimages_pipe/demo.py": "def learn():\n    from nlc_model import train\n",
        "nlc_model/__init__.py": "",
        "nlc_model/train.py": "import torch\nfrom openimages_pipe.errors import InputError\n",
        "nlc_model/images/__init__.py": "",
        "nlc_model/images/embed.py": "from nlc_model import train\n",
    }
    for name, text in (base | files).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_clean_tree_has_no_violation(tmp_path: Path) -> None:
    assert violations(_tree(tmp_path, {})) == []


BROKEN = {
    "1 pipeline": {
        "openimages_pipe/formats/checks.py": "from openimages_pipe.world import layout\n"
    },
    "1 pipeline, through a module": {
        "openimages_pipe/download/worker.py": "from nlc_model.images import embed\n"
    },
    "2 only the CLI": {"openimages_pipe/world/layout.py": "import openimages_pipe.cli\n"},
    "3 outside the CLI and the demo": {
        "openimages_pipe/world/layout.py": "def f():\n    import nlc_model.train\n"
    },
    "3 at module level": {"openimages_pipe/demo.py": "from nlc_model import train\n"},
    "4 core imports images": {"nlc_model/train.py": "from nlc_model.images import embed\n"},
    "5 worker imports aiohttp, through fetch": {
        "openimages_pipe/download/worker.py": "from openimages_pipe.download.fetch import x\n"
    },
    "6 cycle, typing only": {
        "openimages_pipe/formats/checks.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from openimages_pipe.formats.reader import CsvInfo\n"
        ),
        "openimages_pipe/formats/reader.py": "from openimages_pipe.formats import checks\n",
    },
    "7 heavy face": {"openimages_pipe/download/__init__.py": "from .resize import x\n"},
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_rule_is_reported(tmp_path: Path, case: str) -> None:
    found = violations(_tree(tmp_path, BROKEN[case]))
    rule = case.split()[0]  # a broken rule may break others too (a new edge can close a cycle)
    assert any(line.startswith(rule + " ") for line in found), found


def test_help_loads_none_of_the_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from openimages_pipe.cli import app\n"
        "for args in (['--help'], ['download', '--help'], ['train', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = ('polars', 'pyarrow', 'aiohttp', 'PIL', 'torch', 'numpy', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
