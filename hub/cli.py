"""What every command-line tool of this repo shares: `--help` that opens with a summary and an example, argument
checks that name the argument, and expected errors as one line with exit code 2.

Standard library only and imported by hub/, recipes/ and dataset_scripts/ alike, so a typo is reported before
torch, transformers or datasets are imported. The model package (`modeling_allava`) is not the place for it: it ships
as remote code and its import already costs those libraries.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path


EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input (an argument, file, field or row, named in the message): exit code 2, no traceback."""


def cli_parser(summary: str, example: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose help starts with what the tool does and one command that runs it."""
    return argparse.ArgumentParser(
        description=f"{summary}\n\nexample:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter
    )


def one_line(error: BaseException) -> str:
    """The error message on one line (multi-line messages are joined), for stderr."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__


def run(
    main: Callable[[list[str] | None], int | None],
    argv: list[str] | None = None,
    expected: tuple[type[BaseException], ...] = (UsageError,),
) -> int:
    """Call `main(argv)`; an `expected` error prints `error: <message>` on one line and gives exit code 2.

    The traceback is printed too when LOGLEVEL=DEBUG, for bug reports; anything not expected propagates as usual.
    """
    try:
        return main(argv) or 0
    except expected as error:
        if os.environ.get("LOGLEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        logging.shutdown()
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE


def existing_folder(value: str | Path, what: str) -> Path:
    """`value` as a folder that exists; otherwise a UsageError naming the argument (`what`) and the path."""
    path = Path(value).expanduser()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "no such folder"
        raise UsageError(f"{what}: {value}: {problem}")
    return path


def looks_like_path(value: str) -> bool:
    """True for strings that can only be local paths (./x, ../x, /x, ~/x, a/b/c, C:\\x), never Hub ids."""
    return value.startswith((".", "/", "~")) or "\\" in value or value.count("/") > 1 or ":" in value


def folder_or_repo_id(value: str, what: str) -> str:
    """A local folder that exists, or a Hub repo id; a mistyped local path is named at once instead of failing later
    as an unreachable or unknown Hub repo. `runs/stage1` is read as a local path when `runs/` exists here."""
    path = Path(value).expanduser()
    if path.is_dir():
        return value
    if path.exists() or looks_like_path(value):
        existing_folder(value, what)
    if path.parent != Path(".") and path.parent.is_dir():
        raise UsageError(f"{what}: {value}: no such folder (read as a local path because {path.parent}/ exists here)")
    return check_repo_id(value, what, hint=" and no such local folder")


def check_repo_id(value: str, what: str, hint: str = "") -> str:
    """`value` if huggingface_hub accepts it as a repo id ('name' or 'namespace/name'); otherwise a UsageError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        raise UsageError(
            f"{what}: {value!r} is not a Hub repo id{hint} (expected 'name' or 'namespace/name': letters, digits, "
            "'-', '_', '.')"
        ) from None
    return value
