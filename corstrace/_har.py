"""``corstrace explain FILE.har``: placeholder until the HAR reader lands."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("har", metavar="FILE.har", help="a HAR file exported from DevTools")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    return 2
