"""`plipbot` command line: parser, settings overrides and the one-line error contract.

Each command module registers its sub-commands (`register(subparsers)`) and implements
`run(args, container) -> int`. Every expected failure is a PlipbotError and is printed as a single
`error: ...` line with a non-zero exit; a traceback reaches the terminal only with `--debug`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from plipbot import __version__, cli_bot, cli_corpus, cli_eval, cli_model, cli_ops, cli_worker
from plipbot.composition import Container
from plipbot.errors import PlipbotError
from plipbot.log_format import TextFormatter
from plipbot.redaction import redact_secrets
from plipbot.settings import load_settings

EXIT_USER_ERROR = 2
COMMAND_MODULES = (cli_model, cli_corpus, cli_worker, cli_bot, cli_ops, cli_eval)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = _OneLineParser(prog="plipbot", description="PLIP label suggestions and similar pathology cases.")
    parser.add_argument("--version", action="version", version=f"plipbot {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def settings_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Command-line flags that override settings (`--model`, `--precision`, `--device`, `--data-dir`)."""
    base = load_settings()
    model = base.model.model_copy()
    for flag, field in (
        ("model", "name"),
        ("precision", "precision"),
        ("device", "device"),
        ("batch_size", "batch_size"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            setattr(model, field, value)
    overrides: dict[str, object] = {"model": model}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `plipbot` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(TextFormatter(exception_messages=args.debug))  # no credentials, no user text
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])
    try:
        container = Container(load_settings(**settings_overrides(args)))
        return int(args.func(args, container) or 0)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"error: invalid setting {where}: {first['msg']}", file=sys.stderr)
        return EXIT_USER_ERROR
    except PlipbotError as err:
        if args.debug:
            raise
        print(f"error: {redact_secrets(err.user_message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one line for people, the traceback with --debug
        if args.debug:
            raise
        reason = f"{type(err).__name__}: {redact_secrets(str(err))}"
        print(f"error: unexpected {reason} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
