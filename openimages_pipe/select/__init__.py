"""`oi-pipe select`: the images of chosen classes, from the label CSVs, as an `--ids` file.

Also what `download --classes` runs before it downloads. Modules, in the order data flows through
them (the classes themselves are resolved by `splits.vocabulary.ClassResolver`, which
`build-splits --classes` shares):

- `records`: the closed sets (`LabelSource`: any, human, machine), without polars.
- `evidence`: the label CSVs, streamed, -> one row per (image, chosen MID): the human verdict and
  the highest machine confidence.
- `images`: which images a selection may take: those the images CSVs list (`--images`,
  `--subset`), those a download holds (`--downloaded`).
- `rules`: the evidence -> the selection: `--source` and the human veto, the restrictions,
  `--exclusive`, `--max-per-class` by a stable hash; the counts per class.
- `outputs`: ids.txt, labels.parquet and select.json, written atomically; the printed table.
- `selection`: `run(SelectConfig)`, composing the stages above.

Imports nothing here: polars loads only with the stages.
"""
