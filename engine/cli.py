"""`python -m engine`: every subcommand lives in its own module under engine.commands.

A command module defines `NAME`, `HELP` and `register(parser)`, which adds its options and sets
`func` (called with the parsed args, returning an exit code). Failures the user can fix raise
EngineError and end as one line on stderr (and an `error` event with --json), exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import EngineError


class _Parser(argparse.ArgumentParser):
    """Usage errors become EngineError, so --json callers get an `error` event like any other failure."""

    def error(self, message: str):
        raise EngineError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m engine",
        description="GAN2Shape engine: 3D shape, albedo, view and light from one image via a 2D GAN.",
    )
    parser.add_argument("--version", action="version", version=f"engine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub.add_parser(module.NAME, help=module.HELP, description=module.HELP))
    return parser


def _fail(message: str, json_mode: bool) -> int:
    if json_mode:
        from .progress import Progress

        Progress(json_mode=True).error(message)
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except EngineError as exc:
        return _fail(str(exc), "--json" in argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        return _fail(str(exc), getattr(args, "json", False))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
