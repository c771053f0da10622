"""Benchmark: `oi-pipe build-splits` next to the same joins in DuckDB SQL, in the same run.

Runs each side in its own child process (wall clock, and peak RSS from that child's rusage via
os.wait4), alternating them `--repeat` times so that both see the same machine, and checks that
both found the same sets (images and labels of T and V). Data from `gen_v1_labels.py`:

    .venv/bin/python benchmarks/gen_v1_labels.py /tmp/oi-v1
    .venv/bin/python benchmarks/build_splits_vs_duckdb.py /tmp/oi-v1 --out /tmp/oi-v1-bench

The DuckDB reference does what build-splits does, in SQL: read the CSVs, keep each image's best
download status, merge repeated labels (highest confidence), join labels to images, the V1
vocabulary rule, class index by sorted MID, the per-image sorted lists of T and V and a seeded
split of V (DuckDB's own hash: the split itself is not what is measured), written to Parquet.
It validates nothing, records no drops and writes no statistics: it is the floor for the joins.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HUMAN = ("human", "verification", "crowdsource-verification")
OI_PIPE = "import sys; from openimages_pipe.cli import main; sys.argv[0] = 'oi-pipe'; main()"


def inputs(data: Path) -> dict[str, list[Path]]:
    return {
        "images": [data / f"images_2016_08/{s}/images.csv" for s in ("train", "validation")],
        "machine": [data / f"machine_ann_2016_08/{s}/labels.csv" for s in ("train", "validation")],
        "human": [data / "human_ann_2016_08/validation/labels.csv"],
    }


def oi_pipe_command(data: Path, out: Path) -> list[str]:
    files = inputs(data)

    def each(option: str, paths: list[Path]) -> list[str]:
        return [arg for path in paths for arg in (option, str(path))]

    return [
        sys.executable, "-c", OI_PIPE, "build-splits",
        *each("--images", files["images"]), *each("--machine-labels", files["machine"]),
        *each("--human-labels", files["human"]),
        "--class-names", str(data / "dict.csv"), "--downloaded", str(data / "download"),
        "--out", str(out),
    ]  # fmt: skip


def duckdb_sql(data: Path, out: Path, seed: int = 0, fraction: float = 0.25) -> str:
    files = inputs(data)

    def csvs(paths: list[Path]) -> str:
        listed = ", ".join(f"'{p}'" for p in paths)
        return f"read_csv([{listed}], header = true, all_varchar = true)"

    human = ", ".join(f"'{s}'" for s in HUMAN)
    return f"""
    CREATE TEMP TABLE manifest AS
      SELECT image_id, min(CASE status WHEN 'ok' THEN 0 WHEN 'failed' THEN 1
                                       WHEN 'missing' THEN 2 ELSE 3 END) AS r
      FROM read_parquet('{data}/download/manifest.parquet') GROUP BY image_id;
    CREATE TEMP TABLE images AS
      SELECT ImageID AS image_id, any_value(Subset) = 'train' AS train
      FROM {csvs(files["images"])} WHERE Subset IS NOT NULL GROUP BY ImageID;
    CREATE TEMP TABLE labels AS
      SELECT l.image_id, l.mid, l.human, l.conf, i.train, coalesce(m.r = 0, false) AS ok
      FROM (SELECT ImageID AS image_id, LabelName AS mid, Source IN ({human}) AS human,
                   max(CAST(Confidence AS FLOAT)) AS conf
            FROM {csvs(files["machine"] + files["human"])}
            WHERE Source IN ('machine', {human}) GROUP BY ALL) l
      JOIN images i USING (image_id) LEFT JOIN manifest m USING (image_id)
      WHERE (l.human AND l.conf IN (0, 1)) OR (NOT l.human AND l.conf >= 0);
    CREATE TEMP TABLE vocab AS
      SELECT mid, (row_number() OVER (ORDER BY mid) - 1)::INTEGER AS class_index
      FROM labels GROUP BY mid
      HAVING count(*) FILTER (WHERE train AND NOT human) >= 20
         AND count(*) FILTER (WHERE NOT train AND human AND conf = 1) >= 50;
    CREATE TEMP TABLE kept AS
      SELECT l.*, v.class_index FROM labels l JOIN vocab v USING (mid)
      WHERE ok AND NOT (train AND human);
    COPY (SELECT v.class_index, v.mid AS label_name,
                 count(*) FILTER (WHERE k.train AND NOT k.human) AS t_count,
                 count(*) FILTER (WHERE NOT k.train AND k.human AND k.conf = 1) AS v_pos,
                 count(*) FILTER (WHERE NOT k.train AND k.human AND k.conf = 0) AS v_neg
          FROM vocab v LEFT JOIN kept k USING (class_index) GROUP BY ALL ORDER BY 1)
      TO '{out}/classes.parquet';
    COPY (SELECT image_id, list(class_index ORDER BY class_index) AS labels,
                 list(conf ORDER BY class_index) AS confidences
          FROM kept WHERE train AND NOT human GROUP BY image_id ORDER BY image_id)
      TO '{out}/T.parquet';
    CREATE TEMP TABLE v AS
      SELECT image_id,
             list(class_index ORDER BY class_index) FILTER (WHERE NOT human) AS labels,
             list(conf ORDER BY class_index) FILTER (WHERE NOT human) AS confidences,
             list(class_index ORDER BY class_index) FILTER (WHERE human AND conf = 1)
               AS verified_pos,
             list(class_index ORDER BY class_index) FILTER (WHERE human AND conf = 0)
               AS verified_neg,
             hash('{seed}:' || image_id) < {fraction} * 18446744073709551615 AS clean
      FROM kept WHERE NOT train GROUP BY image_id HAVING count(*) FILTER (WHERE human) > 0;
    COPY (SELECT * EXCLUDE (clean) FROM v WHERE clean ORDER BY image_id)
      TO '{out}/V_train.parquet';
    COPY (SELECT * EXCLUDE (clean) FROM v WHERE NOT clean ORDER BY image_id)
      TO '{out}/V_eval.parquet';
    """


DUCKDB_SCRIPT = "import duckdb, sys; duckdb.connect().execute(sys.stdin.read())"


def measure(command: list[str], stdin: str | None = None) -> dict:
    """Wall seconds and peak RSS (GB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE if stdin else None, stdout=subprocess.DEVNULL
    )
    if stdin:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{command[:4]} failed with exit code {proc.returncode}")
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }


def set_sizes(out: Path) -> dict:
    import polars as pl  # only for the check, after both ran

    sizes = {}
    for name in ("T", "V_train", "V_eval"):
        frame = pl.read_parquet(out / f"{name}.parquet")
        sizes[name] = (frame.height, int(frame["labels"].list.len().sum()))
    train, evaluate = sizes.pop("V_train"), sizes.pop("V_eval")
    sizes["V"] = (train[0] + evaluate[0], train[1] + evaluate[1])
    return sizes


def alternate(
    root: Path, repeat: int, sides: dict[str, Callable[[Path], dict]]
) -> tuple[dict[str, Path], dict[str, list[dict]]]:
    """Run each side `repeat` times, alternating, each into a fresh ROOT/<side>/: the folders and
    each side's measurements (with the load average before each run)."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    outs = {name: root / name for name in sides}
    for _ in range(repeat):
        for name, side in sides.items():
            shutil.rmtree(outs[name], ignore_errors=True)
            outs[name].mkdir(parents=True)
            load = os.getloadavg()[0]
            runs[name].append(side(outs[name]) | {"load_before": round(load, 2)})
            print(name, runs[name][-1], flush=True)
    return outs, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a folder written by gen_v1_labels.py")
    parser.add_argument("--out", type=Path, default=Path("/tmp/oi-pipe-bench"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    outs, runs = alternate(args.out, args.repeat, {
        "oi-pipe": lambda out: measure(oi_pipe_command(args.data, out)),
        "duckdb": lambda out: measure(
            [sys.executable, "-c", DUCKDB_SCRIPT], duckdb_sql(args.data, out)
        ),
    })  # fmt: skip
    same = set_sizes(outs["oi-pipe"]) == set_sizes(outs["duckdb"])
    best = {name: min(r["wall_s"] for r in rs) for name, rs in runs.items()}
    summary = {
        "runs": runs,
        "best_wall_s": best,
        "same_sets": same,
        "duckdb_over_oi_pipe": round(best["duckdb"] / best["oi-pipe"], 2),
        "cores": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    if not same:
        raise SystemExit(
            f"the two disagree: {set_sizes(outs['oi-pipe'])} vs {set_sizes(outs['duckdb'])}"
        )


if __name__ == "__main__":
    main()
