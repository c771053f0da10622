"""How long `oi-pipe --help` takes, against the interpreter and typer alone, in one run.

Issue 11's bound: `oi-pipe --help` under 0.5 s, loading none of polars, aiohttp, Pillow or torch
(tests/test_import_rules.py checks what is loaded; this measures the time). Each command is a
fresh process, run --repeat times interleaved with the others; wall seconds, min and median.

    python                 python -c pass                 the interpreter's own start-up
    typer                  python -c "import typer"       the CLI framework, our floor
    oi-pipe --help         the app's help
    oi-pipe download --help, oi-pipe train --help, oi-pipe world make --help

    .venv/bin/python benchmarks/cli_startup.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python": [sys.executable, "-c", "pass"],
    "typer": [sys.executable, "-c", "import typer"],
    "oi-pipe --help": [str(BIN / "oi-pipe"), "--help"],
    "oi-pipe download --help": [str(BIN / "oi-pipe"), "download", "--help"],
    "oi-pipe train --help": [str(BIN / "oi-pipe"), "train", "--help"],
    "oi-pipe world make --help": [str(BIN / "oi-pipe"), "world", "make", "--help"],
}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={"COLUMNS": "100"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the page cache
        timed(command)
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            seconds[name].append(timed(command))
    floor = statistics.median(seconds["typer"])
    print(f"{'command':28} {'min s':>7} {'median s':>9} {'median / typer':>15}")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(f"{name:28} {min(runs):7.3f} {median:9.3f} {median / floor:15.2f}")


if __name__ == "__main__":
    main()
