"""How the recipes' command-line scripts report what a user can fix: one line naming the argument, file, field or
row, exit code 2, no traceback (`LOGLEVEL=DEBUG` adds one, for bug reports).

Standard library only, so a script can check its arguments before importing torch, transformers or datasets (several
seconds): a mistyped path is named at once instead of failing a minute later as an unreachable Hub repo.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit


EXIT_FAILED, EXIT_USAGE = 1, 2
T = TypeVar("T")


class InputError(ValueError):
    """Bad input (an argument, file, field or row, named in the message): exit code 2, no traceback."""


class RunFailed(RuntimeError):
    """The run could not go on for a reason outside its input (e.g. an unreachable endpoint): exit code 1."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose `--help` opens with what the script does and one example, and whose usage errors are
    one line (`error: ...`, exit code 2) instead of the full usage text."""

    def __init__(self, summary: str, example: str, **kwargs):
        super().__init__(**kwargs)
        self.summary, self.example = summary, example

    def format_help(self) -> str:
        return f"{self.summary}\nexample: {self.example}\n\n{super().format_help()}"

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def one_line(error: BaseException | str) -> str:
    """The message on one line: multi-line library messages are joined."""
    return " ".join(str(error).split()) or type(error).__name__


def is_path_like(value: str) -> bool:
    """Whether `value` can only mean a local path, not a Hub id: it starts with '/', './', '../' or '~', has more than
    one '/', or has an OS path separator after a first component that exists here (`checkpoints/stage2` when
    `checkpoints/` exists). `org/name` alone is a Hub id."""
    if value.startswith(("/", "./", "../", "~")) or value in (".", "..") or os.path.isabs(value):
        return True
    if value.count("/") > 1:
        return True
    separators = {os.sep, os.altsep or os.sep}
    for separator in separators:
        first, found, _ = value.partition(separator)
        if found and first and Path(first).exists():
            return True
    return False


def check_local_path(value: str, flag: str) -> str:
    """`value` with '~' expanded when it is path-like (see `is_path_like`); an InputError naming `flag` and the
    first missing part when that path does not exist. Other values (Hub ids, bare names) come back unchanged."""
    if not is_path_like(value):
        return value
    path = Path(value).expanduser()
    if path.exists():
        return os.path.expanduser(value)  # otherwise as given: it names the model in results and caches
    missing = path
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    where = f"'{missing.name}' is not in {missing.parent}" if missing != path else "no such file or folder"
    raise InputError(f"{flag} {value}: no such local path ({where}); a Hub id looks like org/name")


def public_url(url: str | None) -> str | None:
    """`url` without user name, password, query string and fragment, which may carry keys: safe to print or log."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: keep nothing of it
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_cli(main: Callable[[], T]) -> T:
    """`main()`'s value. An InputError ends it with `error: <message>` on one line and exit code 2, RunFailed with
    `failed: <message>` and exit code 1 (as SystemExit, which in-process callers can catch); anything else is a bug
    and keeps its traceback."""
    try:
        return main()
    except InputError as error:
        raise SystemExit(_report(error, "error", EXIT_USAGE)) from None
    except RunFailed as error:
        raise SystemExit(_report(error, "failed", EXIT_FAILED)) from None


def _report(error: BaseException, kind: str, code: int) -> int:
    if os.environ.get("LOGLEVEL", "").upper() == "DEBUG":
        traceback.print_exc()
    logging.shutdown()
    print(f"{kind}: {one_line(error)}", file=sys.stderr)
    return code
