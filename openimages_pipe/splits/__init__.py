"""`oi-pipe build-splits` and `stats`: the noisy set T and the verified set V, as Parquet.

A lazy polars query in named steps. Modules, in the order data flows through them:

- `inputs`: the inputs read: the download manifest, the images and the label rows.
- `query`: the query from label rows to the rows of T and V, in named steps.
- `vocabulary`: which classes the splits use, each class's index and name.
- `split_hash`: which side of V an image falls on: a hash of (seed, ImageID) that no library
  version can change.
- `outputs`: what is written: the Parquet files and `splits.json`, the record of how.
- `build`: `run(SplitsConfig)`, composing the steps above.
- `stats`: `oi-pipe stats`, what a splits folder holds, as tables and PNG figures.
"""
