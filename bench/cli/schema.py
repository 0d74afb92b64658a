"""``bench schema``: the suite file's JSON Schema, for editors (completion, checks)."""

from __future__ import annotations

import argparse
import json

from bench.cli import options


def add_parser(sub) -> None:
    options.command(
        sub,
        "schema",
        main,
        help="print the suite file's JSON Schema (for editor completion)",
        description="Prints the JSON Schema of a suite file on stdout, e.g. `bench schema > "
        "suite.schema.json`, for an editor's TOML support (Even Better TOML, taplo) to "
        "complete and check keys.",
    )


def main(args: argparse.Namespace) -> int:
    from bench.spec.suite import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
