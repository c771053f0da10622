"""The Open Images releases, as described by the data files in `manifests/`.

Owns loading `manifests/*.toml` into typed records and answering "which releases write a file of
this kind with these columns?". Nothing about a release is written in code: a new release is a new
TOML file.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass

from openimages_pipe.packaged import manifests_dir


@dataclass(frozen=True)
class ReleaseFile:
    """One official file of a release."""

    kind: str
    name: str
    url: str
    columns: tuple[str, ...]
    header: bool
    subset: str | None = None
    archive: str | None = None
    rows: int | None = None


@dataclass(frozen=True)
class Release:
    """One Open Images release: its files, label sources, subsets and image mirror."""

    id: str
    version: int
    name: str
    date: str
    class_count: int | None
    machine_sources: tuple[str, ...]
    human_sources: tuple[str, ...]
    box_sources: tuple[str, ...]  # Source values of its bounding-box files
    subsets: dict[str, dict[str, int]]
    mirror_template: str
    # subset -> the mirror folders that hold its images, where they are not the subset's own
    # (V1's validation set is in the mirror's validation/ and test/: V2 split it)
    subset_map: dict[str, tuple[str, ...]]
    files: tuple[ReleaseFile, ...]

    def files_of(self, kind: str) -> tuple[ReleaseFile, ...]:
        return tuple(f for f in self.files if f.kind == kind)


def _release_from_toml(doc: dict) -> Release:
    files = tuple(
        ReleaseFile(
            kind=f["kind"],
            name=f["name"],
            url=f.get("url", ""),
            columns=tuple(f.get("columns", ())),
            header=bool(f.get("header", True)),
            subset=f.get("subset"),
            archive=f.get("archive"),
            rows=f.get("rows"),
        )
        for f in doc.get("files", [])
    )
    return Release(
        id=doc["id"],
        version=int(doc["version"]),
        name=doc["name"],
        date=str(doc["date"]),
        class_count=doc.get("class_count"),
        machine_sources=tuple(doc["label_sources"]["machine"]),
        human_sources=tuple(doc["label_sources"]["human"]),
        box_sources=tuple(doc["label_sources"].get("boxes", ())),
        subsets={k: dict(v) for k, v in doc.get("subsets", {}).items()},
        mirror_template=doc["mirror"]["url_template"],
        subset_map={k: tuple(v) for k, v in doc["mirror"].get("subset_map", {}).items()},
        files=files,
    )


@functools.cache
def load_releases() -> tuple[Release, ...]:
    """Every release, oldest first."""
    docs = [
        tomllib.loads(p.read_text(encoding="utf-8"))
        for p in sorted(manifests_dir().glob("v*.toml"))
    ]
    return tuple(sorted((_release_from_toml(d) for d in docs), key=lambda r: r.version))


def release(release_id: str) -> Release:
    by_id = {r.id: r for r in load_releases()}
    if release_id not in by_id:
        raise KeyError(f"unknown release {release_id!r}; known: {', '.join(by_id)}")
    return by_id[release_id]


def releases_with_columns(kind: str, columns: tuple[str, ...], header: bool) -> tuple[str, ...]:
    """Ids of the releases whose official files of `kind` have exactly these columns."""
    return tuple(
        r.id
        for r in load_releases()
        if any(f.columns == columns and f.header == header for f in r.files_of(kind))
    )


def all_machine_sources() -> frozenset[str]:
    return frozenset(s for r in load_releases() for s in r.machine_sources)


def all_human_sources() -> frozenset[str]:
    return frozenset(s for r in load_releases() for s in r.human_sources)


def mirror_folders(release_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The mirror folders to try, in order, for the subsets of a file any of these releases
    could have written; a subset not in the map is its own folder."""
    maps = [release(r).subset_map for r in release_ids]
    subsets = dict.fromkeys(s for m in maps for s in m)
    return {s: tuple(dict.fromkeys(f for m in maps for f in m.get(s, (s,)))) for s in subsets}
