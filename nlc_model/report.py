"""What `train` and `evaluate` hand to people: JSON, per-class Parquet, rich tables and a PNG.

Turns `metrics.Metrics` into `metrics.json` entries (mAP, AP_all, counts and the decile
breakdowns), `per_class.parquet` (AP per class with its counts), the paper's Table 2 layout, the
decile tables and `deciles.png` (mAP by class-frequency and by annotation-quality decile, the
paper's Figure 5-style view of where label cleaning helps). Files are written to a temporary name
and moved into place, so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from nlc_model.data import ClassTable
from nlc_model.metrics import Metrics, decile_maps

# Veit et al., Table 2 (Open Images V1, 3/4 of the validation set): (title, AP_all, mAP).
PAPER = {
    "baseline": ("Baseline (noisy labels only)", 83.82, 61.82),
    "finetune-mixed": ("Fine-tuning with mixed labels (9:1)", 84.80, 61.90),
    "finetune-clean": ("Fine-tuning with clean labels", 85.88, 61.53),
    "nlc-pretrained": ("Ours: cleaner pre-trained, then joint", 87.68, 62.36),
    "nlc-joint": ("Ours: trained jointly", 87.67, 62.38),
}
BREAKDOWNS = {
    "by_frequency_decile": "class frequency in T",
    "by_quality_decile": "annotation quality",
}


def summarize(m: Metrics, classes: ClassTable) -> dict:
    """The JSON entry of one model: headline metrics, counts and both decile breakdowns."""
    return {
        "mAP": m.mAP,
        "AP_all": m.AP_all,
        "classes_evaluated": m.classes_evaluated,
        "classes": len(classes),
        "pairs": m.pairs,
        "images": m.images,
        "images_without_scores": m.images_without_scores,
        "by_frequency_decile": decile_maps(m.ap, classes.t_count.astype(np.float64)),
        "by_quality_decile": decile_maps(m.ap, classes.quality),
    }


def per_class(m: Metrics, classes: ClassTable) -> pa.Table:
    return pa.table(
        {
            "class_index": pa.array(np.arange(len(classes)), pa.int32()),
            "label_name": classes.label_name,
            "display_name": classes.display_name,
            "ap": pa.array(m.ap, pa.float64(), from_pandas=True),  # NaN -> null: not evaluated
            "eval_pos": m.positives,
            "eval_neg": m.negatives,
            "t_count": classes.t_count,
            "quality": pa.array(classes.quality, from_pandas=True),
        }
    )


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_parquet(path: Path, table: pa.Table, config: dict) -> None:
    """The table with the resolved config in its schema metadata, written atomically."""
    meta = {b"oi_pipe_config": json.dumps(config, default=str).encode()}
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    os.replace(tmp, path)


def pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def results_table(results: dict[str, dict]) -> Table:
    """The paper's Table 2 layout, with its Open Images V1 figures beside ours for reference."""
    table = Table(title="Veit et al. Table 2 layout (AP in %, verified pairs of V_eval only)")
    for col in ("model", "AP_all", "mAP", "classes", "samples/s", "paper AP_all", "paper mAP"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in results.items():
        title, paper_all, paper_map = PAPER.get(name, (name, math.nan, math.nan))
        speed = r.get("samples_per_s")
        table.add_row(
            title,
            pct(r["AP_all"]),
            pct(r["mAP"]),
            f"{r['classes_evaluated']}/{r['classes']}",
            "-" if speed is None else f"{speed:,.0f}",
            f"{paper_all:.2f}" if not math.isnan(paper_all) else "-",
            f"{paper_map:.2f}" if not math.isnan(paper_map) else "-",
        )
    return table


def decile_table(results: dict[str, dict], breakdown: str) -> Table:
    table = Table(title=f"mAP (%) by decile of {BREAKDOWNS[breakdown]} (1 = lowest)")
    table.add_column("decile", justify="right")
    table.add_column("range", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    first = next(iter(results.values()))[breakdown]
    for i, row in enumerate(first):
        cells = [pct(r[breakdown][i]["mAP"]) for r in results.values()]
        table.add_row(str(row["decile"]), f"{row['key_min']:.3g}-{row['key_max']:.3g}", *cells)
    return table


def plot_deciles(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (key, label) in zip(axes, BREAKDOWNS.items(), strict=True):
        for name, r in results.items():
            rows = r[key]
            ax.plot([x["decile"] for x in rows], [100 * x["mAP"] for x in rows], "o-", label=name)
        ax.set_xlabel(f"decile of {label} (1 = lowest)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
