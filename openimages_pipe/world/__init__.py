"""The offline Open Images world: a fixture and demo, never imported by the pipeline.

`world make` writes a small, realistic world in the official formats; `world serve` serves it on
127.0.0.1 with Flickr's and S3's real failure modes. Modules, in the order a world is made and
served:

- `layout`: where every file of a world lives and what its URLs look like.
- `classes`: the class hierarchy and what each class looks like.
- `quota`: fixed quotas for the rare cases, so that even a tiny world shows each of them.
- `labels`: machine labels like a real classifier's, and their human verification.
- `flickr`: the Flickr side of each photo: author, title, IDs and URLs.
- `drawing`: the pixels of an upright scene: shapes, masks, textures.
- `render`: the procedural images (variants, encodings, files), deterministic from a seed.
- `make`: `world make`, writing all of it.
- `faults`: which image fails and how: seeded, pure fault injection.
- `responses`: what the server sends for each fault.
- `state`: what a running server knows: routes, fates, the request log, the truth file.
- `server`: `world serve`, the world over HTTP.
"""
