"""Backbone f, label-cleaning network g and classifier h of Veit et al. (CVPR 2017).

The paper's method on features f(I) read from a table. Modules, in the order data flows through
them:

- `synthetic`: a generated feature world with known truth and Open Images-like label noise.
- `data`: the split files and the features table, read once and held on the training device.
- `batches`: T and V_train rows drawn and mixed 9:1, assembled on the device.
- `models`: g and h with their config dataclasses.
- `loop`: the one training loop both trainers run: settings, phases, the learning-rate schedule,
  checkpoints and resume, the per-variant driver.
- `train`: `oi-pipe train`, the five variants on cached features.
- `metrics`: AP over verified (image, class) pairs only, mAP, AP_all, deciles.
- `evaluate`: those metrics for any model's scores on V_eval.
- `report`: metrics.json, per-class Parquet, the Table 2 layout, rich tables and a PNG.
- `clean_labels`: T's labels as cleaned by g.

`images/` is the image path (shards -> crops -> f; `train --stage backbone`, `embed`, torchrun);
this core never imports it. Imports nothing here: torch loads with the modules that need it.
"""
