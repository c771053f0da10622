"""The read stage of `download`: images CSVs -> the ImageTasks still to do, streamed.

Owns which rows a run takes (subset, ImageID list or class selection, share of a split download,
limit), which of them
the manifest already settled, and how rows become ImageTasks with their candidate URLs. Each file
is a lazy query streamed in batches, one file after the other, so 9M-row CSVs are read in bounded
memory and `--limit` stops reading early. A row whose ImageID is not 16 hex digits is not fetched:
it is reported (by value) and counted, and the rest of the file goes on.

One task per ImageID per run, however many rows of however many CSVs list it: `read_plan` first
sorts the selected ImageIDs (as UInt64: 8 bytes a row) to find the repeated ones, and gathers only
their rows. The first row of an ImageID carries its task, later ones are skipped and counted, and
where they name other URLs the task gets the candidates of all. The mirror folders of a subset come
from the release manifests (`mirror.subset_map`), not from code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from openimages_pipe.download.records import Candidate, ImageTask, Source
from openimages_pipe.errors import InputError
from openimages_pipe.formats import checks as csv_checks
from openimages_pipe.formats import reader, releases
from openimages_pipe.select.selection import SelectConfig

BATCH_ROWS = 20_000
MIRROR_TEMPLATE = "https://open-images-dataset.s3.amazonaws.com/{subset}/{image_id}.jpg"
_PRIOR_COLUMNS = ("image_id", "status", "first_seen", "attempts", "last_ok")
# What a row's candidates are made of: later rows of an ImageID that agree on these add nothing.
_CANDIDATE_COLUMNS = ("subset", "original_url", "thumbnail_300k_url", "_map")
_TASK_COLUMNS = ("image_id", "original_size", "original_md5", "rotation")

FolderMap = dict[str, tuple[str, ...]]  # subset -> the mirror folders that may hold its images


@dataclass(frozen=True)
class InputConfig:
    csvs: tuple[Path, ...]
    subsets: tuple[str, ...] = ()
    ids_file: Path | None = None
    limit: int | None = None
    share_index: int = 0
    share_count: int = 1
    sources: tuple[Source, ...] = (Source.ORIGINAL, Source.THUMBNAIL, Source.MIRROR)
    mirror_template: str = MIRROR_TEMPLATE
    # `--classes`: the selection that the run makes first, of the images these CSVs list; its
    # ids.txt becomes ids_file (pipeline.select_classes)
    selection: SelectConfig | None = None


@dataclass(frozen=True)
class ReadPlan:
    """What `read_plan` found before the run: each file's mirror folders, and the repeated rows."""

    folder_maps: tuple[FolderMap, ...]  # the distinct maps, by a row's `_map`
    file_maps: tuple[int, ...]  # each input file's index into `folder_maps`
    later: pl.Series  # `_row`s skipped: an earlier row (of any input file) lists their ImageID
    merged: dict[int, list[dict]]  # _key -> its rows in input order, where they differ in URLs

    @property
    def duplicates(self) -> int:
        return self.later.len()


@dataclass(frozen=True)
class Batch:
    """One batch of work: the tasks, what the manifest knew of them, and the rows refused."""

    tasks: list[ImageTask]
    prior: dict[str, dict]  # image_id -> status, first_seen, attempts, last_ok of earlier runs
    invalid_ids: list[str]


def read_ids(path: Path) -> pl.DataFrame:
    """An `--ids` file: one ImageID per line (a header line `ImageID` is allowed)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise InputError(f"cannot read the ImageID list ({e.strerror})", path) from None
    ids = []
    for number, line in enumerate(lines, start=1):
        value = line.strip().split(",")[0].strip('"')
        if not value or (number == 1 and value.lower() in ("imageid", "image_id")):
            continue
        if not reader.is_image_id(value):
            raise InputError("ImageID is not 16 hex digits", path, number, value)
        ids.append(value.lower())
    return pl.DataFrame({"image_id": ids}, schema={"image_id": pl.String}).unique()


def read_plan(cfg: InputConfig) -> ReadPlan:
    """Check the files against the options, then find the ImageIDs listed more than once."""
    if not cfg.csvs:
        raise InputError("no input files given")
    infos = [reader.inspect_csv(p) for p in cfg.csvs]
    for info in infos:
        # a record missing a comma would be read with its columns shifted (a URL as the MD5):
        # refused, naming its line, before anything is fetched
        csv_checks.check_ragged(info)
        if cfg.subsets and "Subset" not in info.columns:
            raise InputError(
                f"--subset {','.join(cfg.subsets)} needs a Subset column and this file has none: "
                "pass only the files of that subset, without --subset",
                info.path,
            )
    # a layout no manifest records (an early V1 one, a third party's) could be any release's
    every = tuple(r.id for r in releases.load_releases())
    maps = [releases.mirror_folders(info.releases or every) for info in infos]
    distinct = list({tuple(sorted(m.items())): m for m in maps}.values())
    file_maps = tuple(distinct.index(m) for m in maps)
    try:
        later, merged = _duplicates([_selected(cfg, i, m) for i, m in enumerate(file_maps)])
    except pl.exceptions.PolarsError as e:
        raise _located(cfg.csvs, e) from None
    return ReadPlan(tuple(distinct), file_maps, later, merged)


def _selected(cfg: InputConfig, index: int, folder_map: int) -> pl.LazyFrame:
    """The rows of input file `index` that the options select, with their place in the input
    (`_row`: the file's index in the high 32 bits, the row's in the low) and ImageID as UInt64."""
    lf = reader.scan(cfg.csvs[index], reader.FileKind.IMAGES, validate=False)
    lf = lf.with_row_index("_row").with_columns(  # before any filter: every query agrees on it
        pl.col("_row").cast(pl.UInt64) + (index << 32),
        pl.col("image_id").str.to_lowercase(),
        _map=pl.lit(folder_map, pl.UInt32),
    )
    lf = lf.with_columns(
        valid=pl.col("image_id").fill_null("").str.contains(reader.IMAGE_ID_PATTERN)
    )
    hex_value = pl.col("image_id").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    lf = lf.with_columns(_key=pl.when("valid").then(hex_value))
    if cfg.subsets:
        lf = lf.filter(pl.col("subset").is_in(cfg.subsets))
    if cfg.ids_file is not None:
        lf = lf.join(read_ids(cfg.ids_file).lazy(), on="image_id", how="semi")
    if cfg.share_count > 1:
        lf = lf.filter(in_share(cfg.share_index, cfg.share_count) | ~pl.col("valid"))
    return lf


def _duplicates(files: list[pl.LazyFrame]) -> tuple[pl.Series, dict[int, list[dict]]]:
    """A sort of the selected ImageIDs finds the repeated ones; only their rows are gathered."""
    keyed = [lf.filter(pl.col("_key").is_not_null()) for lf in files]
    keys = pl.concat([lf.select("_key") for lf in keyed]).sort("_key")
    repeated = keys.filter(pl.col("_key") == pl.col("_key").shift(1)).unique()
    repeated = repeated.collect(engine="streaming").to_series()
    if repeated.is_empty():
        return pl.Series("_row", [], pl.UInt64), {}
    rows = [lf.filter(pl.col("_key").is_in(repeated.implode())) for lf in keyed]
    # a file at a time: one query over all files holds more of their text at once (measured)
    found = pl.concat([_variants(lf) for lf in rows]).sort("_key", "_row")
    again = pl.col("_key") == pl.col("_key").shift(1)  # a later row of the same ImageID
    differ = found.filter(again & (pl.col("_variant") != pl.col("_variant").shift(1)))["_key"]
    merged: dict[int, list[dict]] = {}
    for row in _gathered(rows, differ).iter_rows(named=True):  # rare: other URLs for one image
        merged.setdefault(row["_key"], []).append(row)
    return found.filter(again)["_row"], merged


def _variants(rows: pl.LazyFrame) -> pl.DataFrame:
    """`_key`, `_row` and a hash of what the row's candidate URLs are made of."""
    present = [c for c in _CANDIDATE_COLUMNS if c in rows.collect_schema()]
    text = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("") for c in present], separator="\x1f"
    )
    return rows.select("_key", "_row", _variant=text.hash()).collect(engine="streaming")


def _gathered(rows: list[pl.LazyFrame], keys: pl.Series) -> pl.DataFrame:
    """The rows of these ImageIDs, in input order, with what a task is made of."""
    lf = pl.concat(rows, how="diagonal_relaxed").filter(pl.col("_key").is_in(keys.implode()))
    wanted = ("_key", "_row", *_TASK_COLUMNS, *_CANDIDATE_COLUMNS)
    lf = lf.select(c for c in wanted if c in lf.collect_schema())
    return lf.collect(engine="streaming").sort("_row")


def _streams(
    cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame, plan: ReadPlan
) -> Iterator[pl.LazyFrame]:
    """The rows of this run, one query per file, one row per ImageID, with a `valid` flag and the
    manifest's prior columns. Files are streamed one after the other: a concatenation would read
    the next file ahead, into memory, while the first is consumed."""
    left = cfg.limit  # counts images, not rows: applied once the repeated rows are gone
    for index, folder_map in enumerate(plan.file_maps):
        lf = _selected(cfg, index, folder_map)
        if plan.duplicates:
            lf = lf.filter(~pl.col("_row").is_in(plan.later.implode()))
        if left is not None:
            if left <= 0:
                return
            lf = lf.head(left)
            left -= lf.select(pl.len()).collect(engine="streaming").item()
        lf = lf.join(done.lazy(), on="image_id", how="anti", maintain_order="left")
        # m:1 by construction (the manifest has one row per ImageID), and not said: the streaming
        # engine cannot check it, so `validate=` would load the whole CSV into memory first
        previous = prior.select(_PRIOR_COLUMNS).lazy()
        yield lf.join(previous, on="image_id", how="left", maintain_order="left")


def in_share(index: int, count: int) -> pl.Expr:
    """Share of an ImageID: its 16 hex digits as an integer, modulo the number of shares.

    ImageIDs are uniformly distributed hex strings, so this is balanced, and anyone can compute it
    in any language: `int(image_id, 16) % count == index`.
    """
    value = pl.col("image_id").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    return (value % count) == index


def _candidates(row: dict, cfg: InputConfig, folders: FolderMap) -> list[Candidate]:
    subset = row.get("subset")
    mirror = [
        cfg.mirror_template.format(subset=folder, image_id=row["image_id"])
        for folder in (folders.get(subset, (subset,)) if subset else ())
    ]
    urls = {
        Source.ORIGINAL: [row.get("original_url")],
        Source.THUMBNAIL: [row.get("thumbnail_300k_url")],
        Source.MIRROR: mirror,
    }
    return [Candidate(s, url) for s in cfg.sources for url in urls[s] if url]


def task_from_rows(
    rows: list[dict], cfg: InputConfig, folder_maps: tuple[FolderMap, ...]
) -> ImageTask:
    """One image's task from the rows that list it, in input order.

    Candidates: every row's, in the order of `cfg.sources` (an original of any row before a
    thumbnail of any, as an original is the one that can be verified), each URL once. Subset,
    size, MD5 and rotation: the first row's that has one."""
    found = [c for row in rows for c in _candidates(row, cfg, folder_maps[row["_map"]])]
    found.sort(key=lambda c: cfg.sources.index(c.source))  # stable: row order within a source
    unique: dict[str, Candidate] = {}
    for candidate in found:
        unique.setdefault(candidate.url, candidate)

    def first(name: str):  # NaN (a missing rotation) is not equal to itself
        return next((r[name] for r in rows if r.get(name) is not None and r[name] == r[name]), None)

    return ImageTask(
        image_id=rows[0]["image_id"],
        subset=first("subset"),
        candidates=tuple(unique.values()),
        original_size=first("original_size"),
        original_md5=first("original_md5"),
        rotation=first("rotation"),
    )


def iter_batches(
    cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame, plan: ReadPlan | None = None
) -> Iterator[Batch]:
    plan = plan or read_plan(cfg)
    try:
        for lf in _streams(cfg, done, prior, plan):
            for frame in reader.iter_batches(lf, BATCH_ROWS):
                yield _batch(frame, cfg, plan)
    except pl.exceptions.PolarsError as e:
        raise _located(cfg.csvs, e) from None


def _batch(frame: pl.DataFrame, cfg: InputConfig, plan: ReadPlan) -> Batch:
    tasks, prior, invalid = [], {}, []
    for row in frame.iter_rows(named=True):
        if not row["valid"]:
            invalid.append(row["image_id"] or "")
            continue
        tasks.append(task_from_rows(plan.merged.get(row["_key"], [row]), cfg, plan.folder_maps))
        if row["first_seen"] is not None:
            prior[row["image_id"]] = {k: row[k] for k in _PRIOR_COLUMNS[1:]}
    return Batch(tasks, prior, invalid)


def _located(csvs: tuple[Path, ...], error: Exception) -> InputError:
    """Find which file broke the stream, and where, for the one-line error."""
    for path in csvs:
        info = reader.inspect_csv(path)
        located = csv_checks.malformed(info, error)
        if located.line is not None:
            return located
    return InputError(f"malformed CSV: {str(error).strip().splitlines()[0]}", csvs[0])


def count_rows(
    cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame, plan: ReadPlan | None = None
) -> int:
    """How many images this run will look at (the progress bar's total): one streaming pass."""
    plan = plan or read_plan(cfg)
    try:
        streams = _streams(cfg, done, prior, plan)
        counts = [lf.filter("valid").select(pl.len()).collect(engine="streaming") for lf in streams]
    except pl.exceptions.PolarsError as e:
        raise _located(cfg.csvs, e) from None
    return sum(c.item() for c in counts)
