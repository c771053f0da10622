"""Benchmark: `oi-pipe select` of 10 classes next to the same selection in DuckDB SQL, same run.

Runs each side in its own child process (wall clock, and peak RSS from that child's rusage via
os.wait4), alternating them `--repeat` times so that both see the same machine, and checks that
both wrote the same ids.txt and the same labels (image_id, label_name, source, confidence).
Data from `gen_v1_labels.py` (79,156,606 + 2,047,758 machine rows, 2,047,758 human rows):

    .venv/bin/python benchmarks/gen_v1_labels.py /tmp/oi-v1
    .venv/bin/python benchmarks/select_vs_duckdb.py /tmp/oi-v1 --out /tmp/oi-v1-select --repeat 3

The classes: the MIDs of ranks 0, 1, 3, 10, 30, 100, 300, 1000, 3000 and last by their number
of human verifications, from the head of the long tail to its end (given as MIDs, so that no
shared display name adds a class on one side only). Both sides do `select --source any
--min-confidence 0.5`: a human-verified positive, or a machine label at or above 0.5 that no
human negative contradicts, merged per (image, class) by the highest confidence. DuckDB reads
the CSVs with `all_varchar` as oi-pipe does and writes ids.txt and labels.parquet; it checks no
row and writes no record: it is the floor for the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import build_splits_vs_duckdb as splits_bench

from openimages_pipe.formats import releases

RANKS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, -1)
MIN_CONFIDENCE = 0.5


def label_files(data: Path) -> list[Path]:
    machine = [data / f"machine_ann_2016_08/{s}/labels.csv" for s in ("train", "validation")]
    return [*machine, data / "human_ann_2016_08/validation/labels.csv"]


def pick_classes(data: Path) -> list[str]:
    """The MIDs at RANKS by human verifications (the small file: a second to read)."""
    import polars as pl

    human = pl.scan_csv(data / "human_ann_2016_08/validation/labels.csv", infer_schema=False)
    counts = human.group_by("LabelName").len().sort("len", "LabelName", descending=True)
    mids = counts.collect()["LabelName"]
    return [mids[r] for r in RANKS]


def oi_pipe_command(data: Path, mids: list[str], out: Path) -> list[str]:
    files = [arg for path in label_files(data) for arg in ("--labels", str(path))]
    return [
        sys.executable, "-c", splits_bench.OI_PIPE, "select", *files, "--classes", ",".join(mids),
        "--source", "any", "--min-confidence", str(MIN_CONFIDENCE), "--out", str(out),
    ]  # fmt: skip


def duckdb_sql(data: Path, mids: list[str], out: Path) -> str:
    listed = ", ".join(f"'{p}'" for p in label_files(data))
    chosen = ", ".join(f"'{m}'" for m in mids)
    human = ", ".join(f"'{s}'" for s in sorted(releases.all_human_sources()))
    machine = ", ".join(f"'{s}'" for s in sorted(releases.all_machine_sources()))
    return f"""
    CREATE TEMP TABLE evidence AS
      SELECT lower(ImageID) AS image_id, LabelName AS label_name,
             max(CAST(Confidence AS FLOAT)) FILTER (WHERE Source IN ({human})
                 AND CAST(Confidence AS FLOAT) IN (0, 1)) AS human,
             max(CAST(Confidence AS FLOAT)) FILTER (WHERE Source IN ({machine})) AS machine
      FROM read_csv([{listed}], header = true, all_varchar = true)
      WHERE LabelName IN ({chosen}) GROUP BY ALL;
    CREATE TEMP TABLE positives AS
      SELECT image_id, label_name, machine, coalesce(human = 1, false) AS by_human,
             coalesce(machine >= {MIN_CONFIDENCE}, false) AND NOT coalesce(human = 0, false)
               AS by_machine
      FROM evidence;
    COPY (SELECT DISTINCT image_id FROM positives WHERE by_human OR by_machine ORDER BY 1)
      TO '{out}/ids.txt' (HEADER false);
    COPY (SELECT image_id, label_name, 'human' AS source, 1.0::FLOAT AS confidence
          FROM positives WHERE by_human
          UNION ALL
          SELECT image_id, label_name, 'machine', machine FROM positives WHERE by_machine
          ORDER BY ALL)
      TO '{out}/labels.parquet';
    """


def same_selection(oi_pipe: Path, duckdb: Path) -> dict:
    """Whether both wrote the same ids.txt and the same labels, and how many."""
    import polars as pl

    ids = [(out / "ids.txt").read_text().split() for out in (oi_pipe, duckdb)]
    labels = [pl.read_parquet(out / "labels.parquet").sort(pl.all()) for out in (oi_pipe, duckdb)]
    return {
        "images": [len(i) for i in ids],
        "labels": [f.height for f in labels],
        "same_ids": ids[0] == ids[1],
        "same_labels": labels[0].equals(labels[1].cast(labels[0].schema)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a folder written by gen_v1_labels.py")
    parser.add_argument("--out", type=Path, default=Path("/tmp/oi-pipe-select-bench"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    mids = pick_classes(args.data)
    print("classes:", ",".join(mids), flush=True)
    outs, runs = splits_bench.alternate(args.out, args.repeat, {
        "oi-pipe": lambda out: splits_bench.measure(oi_pipe_command(args.data, mids, out)),
        "duckdb": lambda out: splits_bench.measure(
            [sys.executable, "-c", splits_bench.DUCKDB_SCRIPT], duckdb_sql(args.data, mids, out)
        ),
    })  # fmt: skip
    check = same_selection(outs["oi-pipe"], outs["duckdb"])
    best = {name: min(r["wall_s"] for r in rs) for name, rs in runs.items()}
    summary = {
        "classes": mids,
        "runs": runs,
        "best_wall_s": best,
        "oi_pipe_over_duckdb": round(best["oi-pipe"] / best["duckdb"], 2),
        "peak_rss_gb": {name: max(r["peak_rss_gb"] for r in rs) for name, rs in runs.items()},
        "check": check,
        "cores": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    if not (check["same_ids"] and check["same_labels"]):
        raise SystemExit(f"the two disagree: {check}")


if __name__ == "__main__":
    main()
