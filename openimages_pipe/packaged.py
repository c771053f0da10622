"""Where oi-pipe's own data files are: the release manifests and the V1 class dictionary.

The one place that knows the two layouts: in a checkout `manifests/` sits beside the package; in a
wheel it travels inside it (`openimages_pipe/manifests/`, as `pyproject.toml` asks). Standard
library only, so that anything may ask it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# The wheel's copy first: an installed package must never read a checkout that happens to be near.
_CANDIDATES = (_PACKAGE_DIR / "manifests", _PACKAGE_DIR.parent / "manifests")


def manifests_dir() -> Path:
    """The folder of `v*.toml`, `placeholders.toml` and `dict.csv`, in a checkout or a wheel."""
    for candidate in _CANDIDATES:
        if (candidate / "v1.toml").is_file():
            return candidate
    raise FileNotFoundError(f"no release manifests in {' or '.join(map(str, _CANDIDATES))}")


def dict_csv() -> Path:
    """The real V1 class dictionary shipped with oi-pipe (7,881 MIDs, CC BY 4.0)."""
    return manifests_dir() / "dict.csv"
