"""`python -m openimages_pipe.cli`: the same as the `oi-pipe` command."""

from openimages_pipe.cli import main

main()
