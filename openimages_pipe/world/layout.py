"""Where every file of an offline world lives and what its URLs look like.

This is the contract between `world make` (which writes the files), `world serve` (which serves
them) and the tests. A world directory holds:

    world.json                  the resolved make config and the world's statistics
    data/...                    the CSVs, in the official file names of the chosen layout
    served/routes.csv           URL path -> (image_id, kind, file) for everything the server serves
    served/original/ID.jpg|png  the "Flickr originals" whose size and MD5 are in the images CSV
    served/thumb/ID.jpg         the smaller Thumbnail300KURL re-encodes
    served/mirror/SUBSET/ID.jpg the S3-mirror-style copies (longest side <= 1024)
    served/photo_unavailable.png  Flickr's placeholder
    truth/objects.csv           the true classes of every image (ancestors included)
    truth/faults.csv            every ImageID's fault: where to point `world serve --truth`
                                (the server writes it; `world make` does not, and a rerun of
                                `world make` deletes it with the rest of `truth/`)

URLs keep Flickr's and S3's shapes under one local base URL, the real host as first path segment:
    {base}/farm3.staticflickr.com/2467/3654456151_a8c2b5a1e5_o.jpg      (OriginalURL)
    {base}/c2.staticflickr.com/3/2467/3654456151_5f1c0a2b9d_z.jpg       (Thumbnail300KURL)
    {base}/open-images-dataset/{subset}/{image_id}.jpg                  (mirror by ImageID)
    {base}/s.yimg.com/pw/images/en-us/photo_unavailable.png             (placeholder)
"""

from __future__ import annotations

import enum
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openimages_pipe.splits.build import SplitsConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642
WORLD_JSON = "world.json"
PLACEHOLDER_PATH = "/s.yimg.com/pw/images/en-us/photo_unavailable.png"
MIRROR_PATH_TEMPLATE = "/open-images-dataset/{subset}/{image_id}.jpg"
ROUTES_COLUMNS = ("path", "image_id", "kind", "file", "content_type")
TRUTH_COLUMNS = ("image_id", "label_name")  # truth/objects.csv
TRUTH_FAULTS_COLUMNS = ("image_id", "fault", "transient")  # truth/faults.csv
# What `world serve` reads from world.json (`world make` writes more: format_version, layout, ...).
WORLD_JSON_REQUIRED = ("seed", "base_url")


class Layout(enum.StrEnum):
    """Which official release's file names and columns a world is written in."""

    V1 = "v1"
    V6 = "v6"
    V7 = "v7"


class RouteKind(enum.StrEnum):
    """What a served URL is: the three sources a downloader can take an image from."""

    ORIGINAL = "original"
    THUMBNAIL = "thumbnail"
    MIRROR = "mirror"


@dataclass(frozen=True)
class Route:
    """One row of routes.csv: a URL path and the file behind it."""

    path: str
    image_id: str
    kind: RouteKind
    file: Path
    content_type: str


# Official file names, relative to data/. V1 has train/validation; V2+ adds test.
LAYOUT_FILES: dict[Layout, dict[str, str]] = {
    Layout.V1: {
        "images": "images/{subset}/images.csv",
        "machine_labels": "machine_ann/{subset}/labels.csv",
        "human_labels": "human_ann/{subset}/labels.csv",
        "class_descriptions": "dict.csv",
    },
    Layout.V6: {
        "images": "{v6_images}",
        "machine_labels": "{subset}-annotations-machine-imagelabels.csv",
        "human_labels": "{human_prefix}{subset}-annotations-human-imagelabels.csv",
        "class_descriptions": "oidv6-class-descriptions.csv",
    },
    Layout.V7: {
        "images": "{v6_images}",
        "machine_labels": "oidv7-{short}-annotations-machine-imagelabels.csv",
        "human_labels": "oidv7-{short}-annotations-human-imagelabels.csv",
        "class_descriptions": "oidv7-class-descriptions.csv",
    },
}
LAYOUT_SUBSETS: dict[Layout, tuple[str, ...]] = {
    Layout.V1: ("train", "validation"),
    Layout.V6: ("train", "validation", "test"),
    Layout.V7: ("train", "validation", "test"),
}
_V6_IMAGES = {
    "train": "oidv6-train-images-with-labels-with-rotation.csv",
    "validation": "validation-images-with-rotation.csv",
    "test": "test-images-with-rotation.csv",
}
_V7_SHORT = {"train": "train", "validation": "val", "test": "test"}


def data_file(layout: Layout, kind: str, subset: str = "") -> str:
    """The official file name (relative to data/) of one kind of CSV for one subset."""
    template = LAYOUT_FILES[layout][kind]
    return template.format(
        subset=subset,
        v6_images=_V6_IMAGES.get(subset, ""),
        short=_V7_SHORT.get(subset, subset),
        human_prefix="oidv6-" if subset == "train" else "",
    )


@dataclass(frozen=True)
class WorldPaths:
    """Every path of one world directory."""

    root: Path

    @property
    def world_json(self) -> Path:
        return self.root / WORLD_JSON

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def served(self) -> Path:
        return self.root / "served"

    @property
    def routes(self) -> Path:
        return self.served / "routes.csv"

    @property
    def placeholder(self) -> Path:
        return self.served / "photo_unavailable.png"

    @property
    def truth(self) -> Path:
        return self.root / "truth"

    @property
    def truth_objects(self) -> Path:
        return self.truth / "objects.csv"

    @property
    def truth_faults(self) -> Path:
        """The documented place for `world serve --truth` (the flag itself has no default)."""
        return self.truth / "faults.csv"

    def original(self, image_id: str, ext: str) -> Path:
        return self.served / "original" / f"{image_id}.{ext}"

    def thumbnail(self, image_id: str) -> Path:
        return self.served / "thumb" / f"{image_id}.jpg"

    def mirror(self, subset: str, image_id: str) -> Path:
        return self.served / "mirror" / subset / f"{image_id}.jpg"

    def read_world_json(self) -> dict:
        return json.loads(self.world_json.read_text(encoding="utf-8"))


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now: a world made for it can then be served on it."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def base_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"


def original_url(base: str, farm: int, server: int, photo_id: int, secret: str, ext: str) -> str:
    return f"{base}/farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}_o.{ext}"


def thumbnail_url(base: str, farm: int, server: int, photo_id: int, secret: str) -> str:
    return f"{base}/c{farm % 8 + 1}.staticflickr.com/{farm}/{server}/{photo_id}_{secret}_z.jpg"


def mirror_url(base: str, subset: str, image_id: str) -> str:
    return base + MIRROR_PATH_TEMPLATE.format(subset=subset, image_id=image_id)


def mirror_template(base: str) -> str:
    """The `--mirror-url` template a downloader uses for this world's mirror."""
    return base + MIRROR_PATH_TEMPLATE


def splits_config(world: Path, out: Path, **options: object) -> SplitsConfig:
    """The config that builds the splits of a `world make` folder, whatever its layout."""
    from openimages_pipe.splits.build import SplitsConfig  # polars: only for those who build

    paths = WorldPaths(Path(world))
    layout = Layout(paths.read_world_json()["layout"])

    def files(kind: str) -> tuple[Path, ...]:
        found = (paths.data / data_file(layout, kind, s) for s in LAYOUT_SUBSETS[layout])
        return tuple(p for p in found if p.is_file())

    return SplitsConfig(
        images=files("images"),
        machine_labels=files("machine_labels"),
        human_labels=files("human_labels"),
        out=Path(out),
        class_names=paths.data / data_file(layout, "class_descriptions"),
        **options,
    )
