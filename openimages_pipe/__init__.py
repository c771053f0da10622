"""oi-pipe: rebuild Open Images from its URL lists and prepare it for learning from noisy labels.

One subpackage per family, each with a face (`__init__.py`) that lists its modules in the order
data flows through them and imports nothing heavy:

- `formats`: the Open Images edge: what each published CSV is; its rows read and checked.
- `download`: `oi-pipe download`: CSV rows -> fetched, verified, resized images in shards.
- `splits`: `oi-pipe build-splits` and `stats`: the noisy set T and the verified set V.
- `world`: the offline world and its fault server (a fixture and demo; the pipeline never
  imports it).
- `cli`: the typer app and its commands; the only importer of nlc_model here, inside functions.

Beside them: `errors` (the one exception for bad input), `packaged` (where the manifests and
dict.csv are, in a checkout and in a wheel) and `demo` (the whole pipeline on an offline world).
The import rules are in tests/fixtures/import_rules.py, enforced by tests/test_import_rules.py.
"""

__version__ = "0.1.0"
