"""The `oi-pipe` command line: the typer app, and the order its commands are listed in.

One thin typer command per job, each building the frozen config of what it runs and calling its
`run(cfg)`. Modules, in the order a user meets the commands:

- `__init__` (here): the app, `demo` and `inspect`, and the order of `--help`.
- `select`: `select`, the images of chosen classes, and the options `download --classes` shares.
- `download`: `download` and `status`.
- `splits`: `build-splits` and `stats`.
- `learn`: `train` (nlc_model, imported inside it).
- `models`: `embed`, `evaluate` and `clean-labels`, the commands around the trainer.
- `world`: `world make` and `world serve`.
- `common`: what every command shares: an `InputError` becomes one line on stderr naming the
  file, the line and the value, and exit code 1 (`guarded`).

What a command runs is imported inside it, so that `oi-pipe --help` stays fast and loads none of
polars, aiohttp, Pillow or torch. Only this package imports this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe import __version__
from openimages_pipe.cli import download as cli_download
from openimages_pipe.cli import learn as cli_learn
from openimages_pipe.cli import models as cli_models
from openimages_pipe.cli import select as cli_select
from openimages_pipe.cli import splits as cli_splits
from openimages_pipe.cli import world as cli_world
from openimages_pipe.cli.common import guarded

app = typer.Typer(
    name="oi-pipe",
    help="Rebuild Open Images from its URL lists and learn from its noisy labels.",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oi-pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Rebuild Open Images from its URL lists and learn from its noisy labels."""


def inspect_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Open Images CSV files (images, labels, class files) or glob patterns."
        ),
    ],
    validate: Annotated[
        bool,
        typer.Option(help="Scan every row and stop at the first bad value (file, line, value)."),
    ] = True,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: one object per file (path, kind, header, releases, rows, error).",
        ),
    ] = False,
) -> None:
    """Tell what each Open Images CSV is: its kind, the releases that wrote it, its rows.

    The kind and release come from the header (or its absence) and, for labels and boxes, the
    Source values of the first rows; with --validate every row is read once, streaming, and the
    first bad ImageID, Confidence, OriginalSize or Rotation is reported with its file and line.
    Every file is reported, a failing one with its error in place; the exit code is 1 if any failed.
    """
    from openimages_pipe.formats import inspect_files as command
    from openimages_pipe.formats import paths

    def body() -> None:
        cfg = command.InspectConfig(paths.expand(files, "inspect"), validate, as_json)
        if any(r.error for r in command.run(cfg)):
            raise typer.Exit(1)

    guarded(body)


def demo_cmd(
    out: Annotated[
        Path | None,
        typer.Argument(help="Directory for the demo world; default: a temporary one."),
    ] = None,
    images: Annotated[int, typer.Option(min=10, help="Number of images in the world.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of its faults.")] = 0,
    faults: Annotated[str, typer.Option(help="Fault mix the server injects.")] = "flickr",
    learn: Annotated[
        bool, typer.Option(help="Also train f, embed, and run the five variants (CPU).")
    ] = True,
) -> None:
    """Run everything that exists on an offline world, with no internet.

    Makes a world, serves it on 127.0.0.1 with realistic faults, probes its URLs and reads every
    CSV back through the reader, printing what each stage produced.
    """
    from openimages_pipe import demo

    cfg = demo.DemoConfig(out=out, images=images, seed=seed, faults=faults, learn=learn)
    guarded(lambda: demo.run(cfg))


# In `--help`, in the order a user meets them: the demo, the three jobs with their companions,
# then the tools around them.
app.command("demo")(demo_cmd)
app.command("select")(cli_select.select_cmd)
app.command("download")(cli_download.download_cmd)
app.command("status")(cli_download.status_cmd)
app.command("build-splits")(cli_splits.build_splits_cmd)
app.command("stats")(cli_splits.stats_cmd)
app.command("train")(cli_learn.train_cmd)
app.command("embed")(cli_models.embed_cmd)
app.command("evaluate")(cli_models.evaluate_cmd)
app.command("clean-labels")(cli_models.clean_labels_cmd)
app.command("inspect")(inspect_cmd)
app.add_typer(cli_world.world_app, name="world")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
