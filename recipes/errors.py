"""How the recipes' command-line scripts end: bad input is one line and exit 2, an interruption one line and exit 3.

A traceback is kept for bugs; `LOGLEVEL=DEBUG` shows one for every failure. Light on purpose (no torch, no
transformers): scripts import it before their heavy imports so early checks fail in a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable


EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
logger = logging.getLogger("allava")


class InputError(ValueError):
    """The input (a file, a field, a row) cannot be used as given; the message names it and says why."""


class Interrupted(Exception):
    """The run was stopped (Ctrl-C) after keeping what it finished; the message says how to continue."""


def debugging() -> bool:
    return os.environ.get("LOGLEVEL", "").upper() == "DEBUG"


def run_cli(main: Callable[[], object]) -> int:
    """Run `main` and turn expected failures into one line on stderr and an exit code (see the module docstring)."""
    try:
        main()
    except InputError as error:
        return _report(error, "error", EXIT_USAGE)
    except Interrupted as error:
        return _report(error, "interrupted", EXIT_INCOMPLETE)
    except KeyboardInterrupt as error:
        return _report(error, "interrupted", EXIT_INCOMPLETE, "interrupted before any training step; nothing to keep")
    return EXIT_OK


def _report(error: BaseException, kind: str, code: int, text: str | None = None) -> int:
    if debugging():
        logger.exception("%s (exit %d)", kind, code)
    message = text or str(error)
    print(message if message.startswith(kind) else f"{kind}: {message}", file=sys.stderr)
    return code
