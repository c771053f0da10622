"""`oi-pipe stats`: what a `build-splits` folder holds, as rich tables and PNG figures.

Reads splits.json, classes.parquet, V_train/V_eval.parquet and link_rot.parquet (when the splits
were built with a download manifest) and shows:
  - the sets and every drop;
  - the class frequency, the long tail, on a log scale (figure `class_frequency.png`);
  - the machine labels' precision measured on V: a machine label of a V image is right if a human
    verified the class present, wrong if verified absent (unverified ones do not count). Overall
    (Veit et al. found 26.6% false positives in Open Images V1), by machine confidence, and per
    class: the annotation-quality curve (`label_precision.png`);
  - how many images each class lost to link rot, sorted by the share lost (`link_rot.png`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from openimages_pipe.errors import InputError
from openimages_pipe.splits import outputs as split_record

FIGURE_DPI = 120


@dataclass(frozen=True)
class StatsConfig:
    splits: Path
    figures: Path | None = None  # default: SPLITS/figures
    top: int = 10  # rows in each per-class table


@dataclass(frozen=True)
class SplitStats:
    """Everything `stats` shows, computed from a splits folder."""

    record: dict
    classes: pl.DataFrame  # classes.parquet + tp, fp, precision of the machine labels on V
    by_confidence: pl.DataFrame  # confidence, tp, fp, precision
    link_rot: pl.DataFrame | None
    tp: int
    fp: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")


def _read(splits: Path, name: str) -> pl.DataFrame:
    path = splits / f"{name}.parquet"
    if not path.is_file():
        raise InputError(f"missing {name}.parquet: not a complete `build-splits` output", splits)
    return pl.read_parquet(path)


def verified_machine_labels(v: pl.DataFrame) -> pl.DataFrame:
    """One row per machine label of V that a human verified: class_index, confidence, right."""
    return (
        v.select("labels", "confidences", "verified_pos", "verified_neg")
        .explode("labels", "confidences")
        .drop_nulls("labels")
        .select(
            class_index="labels",
            confidence="confidences",
            right=pl.col("verified_pos").list.contains(pl.col("labels")),
            wrong=pl.col("verified_neg").list.contains(pl.col("labels")),
        )
        .filter(pl.col("right") | pl.col("wrong"))
    )


def _precision(frame: pl.LazyFrame | pl.DataFrame, by: str) -> pl.DataFrame:
    return (
        frame.lazy()
        .group_by(by)
        .agg(tp=pl.col("right").sum().cast(pl.Int64), fp=pl.col("wrong").sum().cast(pl.Int64))
        .with_columns(precision=pl.col("tp") / (pl.col("tp") + pl.col("fp")))
        .sort(by)
        .collect()
    )


def compute(splits: Path) -> SplitStats:
    splits = Path(splits)
    record = split_record.read_record(splits)
    v = pl.concat([_read(splits, "V_train"), _read(splits, "V_eval")])
    checked = verified_machine_labels(v)
    per_class = _precision(checked, "class_index")
    classes = _read(splits, "classes").join(per_class, on="class_index", how="left", validate="1:1")
    classes = classes.with_columns(pl.col("tp", "fp").fill_null(0))
    buckets = checked.with_columns(pl.col("confidence").round(1))
    rot = _read(splits, "link_rot") if (splits / "link_rot.parquet").is_file() else None
    tp, fp = int(checked["right"].sum()), int(checked["wrong"].sum())
    return SplitStats(record, classes, _precision(buckets, "confidence"), rot, tp, fp)


def _name(row: dict) -> str:
    return f"{row['display_name'] or '?'} ({row['label_name']})"


def sets_table(record: dict) -> Table:
    table = Table("set", "images", "machine labels", "verified +", "verified -", title="Sets")
    for name in ("T", "V_train", "V_eval", "V"):
        c = record["counts"][name]
        pos, neg = c.get("verified_pos"), c.get("verified_neg")
        table.add_row(
            name,
            f"{c['images']:,}",
            f"{c['labels']:,}",
            "" if pos is None else f"{pos:,}",
            "" if neg is None else f"{neg:,}",
        )
    return table


def drops_table(record: dict) -> Table:
    table = Table("dropped", "rows / images", title="What was dropped, in pipeline order")
    for what, n in record["drops"].items():
        table.add_row(what.replace("_", " "), f"{n:,}")
    return table


def frequency_table(classes: pl.DataFrame, top: int) -> Table:
    table = Table(
        "rank",
        "class",
        "machine labels in T",
        "verified + / - in V",
        title=f"Class frequency: the {top} most and least frequent of {classes.height:,} classes",
    )
    ranked = classes.sort("t_count", descending=True).with_row_index("rank", offset=1)
    shown = (
        ranked.head(top)
        if ranked.height <= 2 * top
        else pl.concat([ranked.head(top), ranked.tail(top)])
    )
    for row in shown.iter_rows(named=True):
        table.add_row(
            str(row["rank"]),
            _name(row),
            f"{row['t_count']:,}",
            f"{row['v_pos']:,} / {row['v_neg']:,}",
        )
    return table


def precision_tables(stats: SplitStats, top: int) -> list[Table]:
    overall = Table(
        "verified machine labels",
        "right",
        "wrong",
        "precision",
        "false positives",
        title="Machine labels measured on V (Veit et al.: 26.6% false positives)",
    )
    overall.add_row(
        f"{stats.tp + stats.fp:,}",
        f"{stats.tp:,}",
        f"{stats.fp:,}",
        f"{stats.precision:.1%}",
        f"{1 - stats.precision:.1%}",
    )
    by_conf = Table("machine confidence", "verified", "precision", title="Precision by confidence")
    for row in stats.by_confidence.iter_rows(named=True):
        by_conf.add_row(
            f"{row['confidence']:.1f}", f"{row['tp'] + row['fp']:,}", f"{row['precision']:.1%}"
        )
    worst = Table("class", "verified", "precision", title=f"The {top} least precise classes")
    rated = stats.classes.filter(pl.col("tp") + pl.col("fp") > 0)
    for row in (
        rated.sort("precision", "fp", descending=[False, True]).head(top).iter_rows(named=True)
    ):
        worst.add_row(_name(row), f"{row['tp'] + row['fp']:,}", f"{row['precision']:.1%}")
    return [overall, by_conf, worst]


def link_rot_table(rot: pl.DataFrame, top: int) -> Table:
    lost, listed = int(rot["lost"].sum()), int(rot["images"].sum())
    share = lost / listed if listed else 0.0
    table = Table(
        "class",
        "images listed",
        "lost",
        "share lost",
        title=f"Link rot: {lost:,} of {listed:,} class-images lost ({share:.1%}); "
        f"the {top} classes that lost the largest share",
    )
    for row in rot.filter(pl.col("images") > 0).head(top).iter_rows(named=True):
        table.add_row(
            _name(row), f"{row['images']:,}", f"{row['lost']:,}", f"{row['lost_share']:.1%}"
        )
    return table


def tables(stats: SplitStats, top: int) -> list[Table]:
    shown = [sets_table(stats.record), drops_table(stats.record)]
    shown += [frequency_table(stats.classes, top), *precision_tables(stats, top)]
    if stats.link_rot is not None:
        shown.append(link_rot_table(stats.link_rot, top))
    return shown


def _save(fig: object, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot(stats: SplitStats, out: Path) -> list[Path]:
    """The three figures, as PNG files in `out`."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    counts = stats.classes["t_count"].sort(descending=True).to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(counts) + 1), counts.clip(min=0.5))
    ax.set(
        yscale="log",
        xlabel="class (most frequent first)",
        ylabel="machine labels in T",
        title="Class frequency: the long tail",
    )
    written = [_save(fig, out / "class_frequency.png")]
    rated = stats.classes.filter(pl.col("tp") + pl.col("fp") > 0)
    precision = rated["precision"].sort(descending=True).to_numpy()
    ax.clear()
    ax.plot(range(1, len(precision) + 1), precision)
    ax.axhline(stats.precision, linestyle="--", label=f"all labels: {stats.precision:.1%}")
    ax.set(
        yscale="linear",
        ylim=(0, 1.02),
        xlabel="class (most precise first)",
        ylabel="precision of machine labels on V",
        title="Annotation quality per class",
    )
    ax.legend()
    written.append(_save(fig, out / "label_precision.png"))
    if stats.link_rot is not None:
        share = stats.link_rot.filter(pl.col("images") > 0)["lost_share"].to_numpy()
        ax.clear()
        ax.plot(range(1, len(share) + 1), share)
        ax.set(
            ylim=(0, 1.02),
            xlabel="class (largest share lost first)",
            ylabel="share of its images lost",
            title="Link rot per class",
        )
        written.append(_save(fig, out / "link_rot.png"))
    plt.close(fig)
    return written


def summary_line(stats: SplitStats) -> str:
    """One line for the demo: classes, precision on V, link rot."""
    line = (
        f"{stats.classes.height:,} classes; machine labels on V: {stats.precision:.1%} "
        f"precise ({1 - stats.precision:.1%} false positives, {stats.tp + stats.fp:,} "
        f"verified)"
    )
    if stats.link_rot is not None:
        lost, listed = int(stats.link_rot["lost"].sum()), int(stats.link_rot["images"].sum())
        line += f"; link rot took {lost:,} of {listed:,} class-images"
    return line


def run(cfg: StatsConfig, console: Console | None = None) -> SplitStats:
    """Compute, print the tables, write the figures."""
    console = console or Console()
    stats = compute(cfg.splits)
    for table in tables(stats, cfg.top):
        console.print(table)
    written = plot(stats, cfg.figures or Path(cfg.splits) / "figures")
    console.print("figures: " + ", ".join(str(p) for p in written))
    return stats
