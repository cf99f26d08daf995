"""The `sr` command: parses arguments and hands each subcommand to its module in `sr.commands`.

Subcommand modules import heavy dependencies (torch, image libraries) only when they run, so `sr --help`
stays fast. Packages built on `sr` (the web demo) add subcommands through the `sr.commands` entry point
group, so `sr` never imports them by name.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from sr import __version__
from sr.commands import evaluate, export, models, restore, train, upscale

COMMANDS = {
    "upscale": upscale,
    "restore": restore,
    "test": evaluate,
    "train": train,
    "export": export,
    "models": models,
}
COMMANDS |= {plugin.name: plugin.load() for plugin in entry_points(group="sr.commands")}


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sr", description="Image super-resolution and restoration with attention networks.")
    parser.add_argument("--version", action="version", version=f"sr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            epilog=module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("sr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
