"""N training processes on one machine: `torchrun` running `train --stage backbone`'s `run`.

`launch` writes the resolved config to OUT/launch.json and starts

    torchrun --standalone --nproc-per-node N -m nlc_model.images.launch OUT/launch.json

(as `python -m torch.distributed.run`); each process reads the config and joins the process group
in `train_backbone.run` (gloo on CPUs, nccl on GPUs, one GPU per process). The same command works
by hand with any torchrun options, several machines included: it only needs the config file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nlc_model import report
from nlc_model.images.train_backbone import BackboneConfig, run
from nlc_model.loop import config_dict, config_from_dict
from openimages_pipe.download import storage
from openimages_pipe.errors import InputError

PATHS = ("splits", "out", "weights")


def save_config(cfg: BackboneConfig, path: Path) -> None:
    report.write_json(path, config_dict(cfg))


def load_config(path: Path) -> BackboneConfig:
    """The config `save_config` wrote: flat, as in every checkpoint."""
    raw = json.loads(path.read_text())
    flat = {k: Path(v) if k in PATHS and v else v for k, v in raw.items()}
    flat["shards"] = storage.location(raw["shards"])  # a Path would collapse s3:// into s3:/
    return config_from_dict(BackboneConfig, flat)


def launch(cfg: BackboneConfig, nproc: int) -> int:
    """Run `cfg` in `nproc` processes under torchrun; returns torchrun's exit code."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    path = cfg.out / "launch.json"
    save_config(cfg, path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", __name__, str(path)]  # fmt: skip
    return subprocess.run(command, check=False).returncode


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: torchrun --nproc-per-node N -m nlc_model.images.launch CONFIG.json",
            file=sys.stderr,
        )
        return 2
    try:
        run(load_config(Path(argv[0])))
    except InputError as e:  # one line per process, as the CLI prints it
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
