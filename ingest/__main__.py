"""`python -m ingest ingest PATH...` / `python -m ingest db migrate`: the same commands as `voicebot`."""

from __future__ import annotations

import argparse
import logging
import sys

from ingest.commands import register


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m ingest")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args()
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
