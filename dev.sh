#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (only python3 and pip needed), installs oi-pipe
# into it when pyproject.toml changed, then runs `demo` (the whole pipeline on the offline world)
# or `test` (lint + the test suite). Any other arguments go to the oi-pipe command itself.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
    rm -f "$VENV"/.installed-* && touch "$STAMP"
fi
cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
    test)
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    demo) exec "$VENV/bin/oi-pipe" demo "$@" ;;
    *) exec "$VENV/bin/oi-pipe" "$cmd" "$@" ;;
esac
