"""The `oi-pipe` command line: one thin typer command per job, each building a frozen config.

Command modules are imported inside each command so that `oi-pipe --help` stays fast and commands
that do not train never import torch. Bad input (an `InputError`) becomes one line on stderr that
names the file, the line and the value, and exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from openimages_pipe import __version__, cli_download
from openimages_pipe.errors import InputError
from openimages_pipe.world_layout import DEFAULT_PORT, Layout

T = TypeVar("T")

app = typer.Typer(
    name="oi-pipe",
    help="Rebuild Open Images from its URL lists and learn from its noisy labels.",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(
    help="An offline Open Images world: generate it, serve it over HTTP with real-world faults.",
    no_args_is_help=True,
)
app.add_typer(world_app, name="world")


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


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; bad input exits 1 with one clear line instead of a traceback."""
    try:
        return fn()
    except InputError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command("inspect")
def inspect_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="Open Images CSV files (images, labels, class files).")
    ],
    validate: Annotated[
        bool,
        typer.Option(help="Scan every row and stop at the first bad value (file, line, value)."),
    ] = True,
) -> None:
    """Tell what each Open Images CSV is: its kind, the releases that wrote it, its rows.

    The kind and release come from the header (or its absence); with --validate every row is read
    once, streaming, and the first bad ImageID, Confidence, OriginalSize or Rotation is reported
    with its file and line.
    """
    from openimages_pipe import inspect_files as command

    guarded(lambda: command.run(command.InspectConfig(tuple(files), validate)))


app.command("download")(cli_download.download_cmd)
app.command("status")(cli_download.status_cmd)


@world_app.command("make")
def world_make_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the world into.")],
    seed: Annotated[int, typer.Option(help="Everything in the world follows from this seed.")] = 0,
    images: Annotated[int, typer.Option(min=10, help="Number of images.")] = 1000,
    layout: Annotated[
        Layout, typer.Option(help="Official file names and columns of this release.")
    ] = Layout.V1,
    port: Annotated[
        int, typer.Option(help="Port the CSV's URLs point at; `world serve` binds it.")
    ] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Processes that render images.")] = 2,
) -> None:
    """Write a small, realistic Open Images world in the official formats.

    Procedurally drawn images whose labels a small CNN can learn (23 real V1 classes in a
    hierarchy), Flickr-shaped URLs with real sizes and MD5s, machine labels with a real
    classifier's noise (about 26.6% false positives) and human verifications of the validation set.
    """
    from openimages_pipe import world_layout, world_make

    cfg = world_make.MakeConfig(
        out=out,
        seed=seed,
        images=images,
        layout=layout,
        base_url=world_layout.base_url(port=port),
        workers=workers,
    )
    summary = guarded(lambda: world_make.run(cfg))
    typer.echo(world_make.describe(summary))


@world_app.command("serve")
def world_serve_cmd(
    world: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A directory from `world make`.")
    ],
    port: Annotated[
        int | None, typer.Option(help="Port to bind; default: the one the world's URLs use.")
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault mix: `none`, `flickr` (realistic link rot), `all` (every kind), or "
            "`404=0.05,429=0.01,transient=2,...`; presets and overrides combine: `flickr,404=0.1`."
        ),
    ] = "none",
    fault_seed: Annotated[
        int | None, typer.Option(help="Seed of each image's fate; default: the world's seed.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Write every ImageID's fault to this CSV before serving.")
    ] = None,
) -> None:
    """Serve a world over HTTP on 127.0.0.1 at the URLs in its CSVs, with seeded faults.

    Each image's fate is a pure function of (seed, ImageID): 404, 410, a redirect to Flickr's
    "photo unavailable" PNG, 403, 429 with Retry-After, 500/503, a slow first byte, a stalled or
    truncated body, a connection reset, an HTML page, changed bytes, a redirect loop or an endless
    body. Transient faults clear after a few attempts. Stops on Ctrl-C.
    """
    from openimages_pipe import world_server

    cfg = world_server.ServeConfig(
        world=world, port=port, faults=faults, fault_seed=fault_seed, truth=truth
    )
    guarded(lambda: world_server.run(cfg))


@app.command("demo")
def demo_cmd(
    out: Annotated[
        Path | None,
        typer.Argument(help="Directory for the demo world; default: a temporary one."),
    ] = None,
    images: Annotated[int, typer.Option(min=10, help="Number of images in the world.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the world and of its faults.")] = 0,
    faults: Annotated[str, typer.Option(help="Fault mix the server injects.")] = "flickr",
) -> None:
    """Run everything that exists on an offline world, with no internet.

    Makes a world, serves it on 127.0.0.1 with realistic faults, probes its URLs and reads every
    CSV back through the reader, printing what each stage produced.
    """
    from openimages_pipe import demo

    guarded(lambda: demo.run(demo.DemoConfig(out=out, images=images, seed=seed, faults=faults)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
