"""The `world make` and `world serve` commands: the offline Open Images world, as a typer sub-app.

Added to the app by `cli.py`; the world's modules are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.world.layout import DEFAULT_PORT, Layout

world_app = typer.Typer(
    help="An offline Open Images world: generate it, serve it over HTTP with real-world faults.",
    no_args_is_help=True,
)


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
    from openimages_pipe.world import layout as world_layout
    from openimages_pipe.world import make as world_make

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
    from openimages_pipe.world import server as world_server

    cfg = world_server.ServeConfig(
        world=world, port=port, faults=faults, fault_seed=fault_seed, truth=truth
    )
    guarded(lambda: world_server.run(cfg))
