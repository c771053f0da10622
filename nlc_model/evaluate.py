"""`evaluate`: the paper's metrics on V_eval for any model's scores; and scoring our h for `train`.

`run` reads a predictions file (`image_id`, `scores` list<float32> of length d; rows in any
order, images outside V_eval ignored) and reports mAP, AP_all and the decile breakdowns exactly as
`train` does, so other methods can be scored the same way. `predict` runs a classifier h over a
split in chunks, fills the verified pairs and, if asked, streams every score vector to a
predictions file of that same format.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from rich.console import Console

from nlc_model import data, report
from nlc_model.data import SplitSet
from nlc_model.metrics import Metrics, VerifiedPairs, score_pairs
from nlc_model.models import Classifier
from openimages_pipe.errors import InputError

PREDICT_ROWS = 8192  # images per forward pass when scoring: (rows, d) floats come to the host


@dataclass(frozen=True)
class EvaluateConfig:
    splits: Path
    predictions: Path
    out: Path | None = None  # metrics.json, per_class.parquet and deciles.png go here


def pairs_of(split: SplitSet) -> VerifiedPairs:
    host = lambda r: (r.offsets.cpu().numpy(), r.indices.cpu().numpy())  # noqa: E731
    return VerifiedPairs.from_csr(host(split.pos), host(split.neg))


def score_lists(scores: np.ndarray) -> pa.Array:
    """(k, d) scores -> k lists of d float32 values."""
    step = scores.shape[1]
    offsets = pa.array(np.arange(0, scores.size + 1, step, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(scores.ravel()))


@torch.no_grad()
def predict(
    h: Classifier, split: SplitSet, table: torch.Tensor, out: Path | None, config: dict
) -> VerifiedPairs:
    """Score every image of the split with h; fill its pairs; optionally write all scores."""
    pairs, writer = pairs_of(split), None
    device = table.device
    if out is not None:
        schema = pa.schema([("image_id", pa.large_string()), ("scores", pa.list_(pa.float32()))])
        meta = {b"oi_pipe_config": json.dumps(config, default=str).encode()}
        tmp = out.with_name(out.name + ".tmp")
        writer = pq.ParquetWriter(tmp, schema.with_metadata(meta))
    h.eval()
    for a in range(0, len(split), PREDICT_ROWS):
        b = min(a + PREDICT_ROWS, len(split))
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            logits = h(table[split.feature_rows[a:b]].float())
        scores = torch.sigmoid(logits.float()).cpu().numpy()  # (b - a, d)
        pairs.fill(np.arange(a, b), scores)
        if writer is not None:
            ids = split.image_ids.slice(a, b - a).cast(pa.large_string())
            rows = {"image_id": ids, "scores": score_lists(scores)}
            writer.write_table(pa.table(rows, schema=writer.schema))
    h.train()
    if writer is not None:
        writer.close()
        os.replace(tmp, out)
    return pairs


def read_predictions(path: Path, ids: pa.Array, pairs: VerifiedPairs, classes: int) -> int:
    """Fill `pairs` from a predictions file; return how many of its rows are not in V_eval."""
    if not path.is_file():
        raise InputError("predictions file not found", path=path)
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    if not {"image_id", "scores"} <= set(names):
        raise InputError(f"predictions need columns image_id and scores; found {names}", path)
    outside = 0
    for batch in file.iter_batches(PREDICT_ROWS, columns=["image_id", "scores"]):
        scores = batch.column("scores")
        lengths = pc.list_value_length(scores).to_numpy(zero_copy_only=False)
        wrong = lengths[lengths != classes]
        if scores.null_count or len(wrong):
            value = str(wrong[0]) if len(wrong) else "null"
            raise InputError(
                f"every scores list needs {classes} values, one per class", path, value=value
            )
        where = pc.index_in(batch.column("image_id").cast(pa.large_string()), value_set=ids)
        keep = pc.is_valid(where).to_numpy(zero_copy_only=False)
        outside += int((~keep).sum())
        matrix = scores.flatten().to_numpy(zero_copy_only=False).reshape(-1, classes)
        pairs.fill(where.to_numpy(zero_copy_only=False)[keep].astype(np.int64), matrix[keep])
    return outside


def show(console: Console, results: dict[str, dict], out: Path | None) -> None:
    console.print(report.results_table(results))
    for breakdown in report.BREAKDOWNS:
        console.print(report.decile_table(results, breakdown))
    if out is not None:
        report.plot_deciles(results, out / "deciles.png")


def run(cfg: EvaluateConfig, console: Console | None = None) -> dict:
    console = console or Console()
    classes = data.load_classes(cfg.splits)
    path = cfg.splits / "V_eval.parquet"
    table = data.read_table(path, data.VERIFIED_COLUMNS)
    for column in ("verified_pos", "verified_neg"):
        data.check_classes(table.column(column), len(classes), path, column)
    csr = lambda c: data.csr(table.column(c))  # noqa: E731
    pairs = VerifiedPairs.from_csr(csr("verified_pos"), csr("verified_neg"))
    ids = table.column("image_id").combine_chunks().cast(pa.large_string())
    outside = read_predictions(cfg.predictions, ids, pairs, len(classes))
    m: Metrics = score_pairs(pairs, len(classes))
    summary = report.summarize(m, classes) | {"prediction_rows_not_in_V_eval": outside}
    console.print(
        f"{m.images:,} V_eval images scored, {m.images_without_scores:,} without scores "
        f"(left out), {outside:,} prediction rows not in V_eval (ignored)"
    )
    if cfg.out is not None:
        cfg.out.mkdir(parents=True, exist_ok=True)
        config = {k: str(v) for k, v in asdict(cfg).items()}
        report.write_json(cfg.out / "metrics.json", {"predictions": summary, "config": config})
        report.write_parquet(cfg.out / "per_class.parquet", report.per_class(m, classes), config)
    show(console, {cfg.predictions.stem: summary}, cfg.out)
    return summary
