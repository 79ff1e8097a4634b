"""What every command-line tool of this repo shares, implemented once: `--help` that opens with a summary and an
example, argument checks that name the argument, and how a run ends — bad input is `error: <message>` on one line
with exit code 2, a run that could not go on (an unreachable endpoint) `failed: <message>` with exit code 1, an
interruption `interrupted: <message>` with exit code 3. No traceback for those; `LOGLEVEL=DEBUG` adds one, for bug
reports. Anything else is a bug and keeps its traceback.

Standard library only and importing nothing from this repo: hub/, recipes/ and dataset_scripts/ all import it, and
a typo is reported before torch, transformers or datasets are imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
# A value ending in one of these is a file the user means, never a Hub id (`my.jinja`, `data/train.jsonl`).
FILE_SUFFIXES = {
    ".yaml", ".yml", ".json", ".jsonl", ".jinja", ".parquet", ".arrow", ".csv", ".txt", ".safetensors", ".bin", ".pt",
}  # fmt: skip


class InputError(ValueError):
    """Bad input (an argument, file, field or row, named in the message): exit code 2, no traceback."""


class RunFailed(RuntimeError):
    """The run could not go on for a reason outside its input (e.g. an unreachable endpoint): exit code 1."""


class Interrupted(Exception):
    """The run was stopped (Ctrl-C) after keeping what it finished; the message says how to continue: exit code 3."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose `--help` shows, after the usage line, what the tool does and one command that runs
    it, and whose usage errors are one line (`error: ...`, exit code 2) instead of the full usage text."""

    def __init__(self, summary: str, example: str, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=f"{summary}\n\nexample:\n  {example}", **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def one_line(error: BaseException | str) -> str:
    """The message on one line (a multi-line library message is joined), for stderr and result files."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__


def run(
    main: Callable[[list[str] | None], Any],
    argv: list[str] | None = None,
    expected: tuple[type[BaseException], ...] = (),
    *,
    on_ctrl_c: str | None = None,
    exit_now: bool = False,
) -> Any:
    """`main(argv)`'s value (0 for None), or the exit code of an expected failure after one line on stderr.

    InputError and the `expected` types give `error: ...` and 2, RunFailed `failed: ...` and 1, Interrupted
    `interrupted: ...` and 3; with `on_ctrl_c`, Ctrl-C does too, saying that text. `exit_now` raises the code as
    SystemExit instead, for a `main` whose value in-process callers use.
    """
    try:
        result = main(argv)
        return 0 if result is None else result
    except (InputError, *expected) as error:
        code = _report(error, "error", EXIT_USAGE)
    except RunFailed as error:
        code = _report(error, "failed", EXIT_FAILED)
    except Interrupted as error:
        code = _report(error, "interrupted", EXIT_INCOMPLETE)
    except KeyboardInterrupt as error:
        if on_ctrl_c is None:
            raise
        code = _report(error, "interrupted", EXIT_INCOMPLETE, on_ctrl_c)
    if exit_now:
        raise SystemExit(code)
    return code


def _report(error: BaseException, kind: str, code: int, text: str | None = None) -> int:
    if os.environ.get("LOGLEVEL", "").upper() == "DEBUG":
        traceback.print_exc()
    logging.shutdown()
    print(f"{kind}: {one_line(text or error)}", file=sys.stderr)
    return code


def _path_by_form(value: str) -> bool:
    return (
        value.startswith((".", "/", "~"))
        or os.path.isabs(value)
        or "\\" in value
        or ":" in value
        or value.count("/") > 1
        or Path(value).suffix.lower() in FILE_SUFFIXES
    )


def _existing_first_part(value: str) -> str | None:
    for separator in {os.sep, os.altsep or os.sep, "/"}:
        first, found, _ = value.partition(separator)
        if found and first and Path(first).exists():
            return first
    return None


def is_path_like(value: str) -> bool:
    """Whether `value` can only mean a local path, never a Hub id (`org/name`, `gpt2`). The union of the rules each
    tool needs: it starts with '.', '/' or '~' (`./x`, `../x`, `~/x`), is absolute or has a '\\' or ':'
    (`C:\\x`), has more than one '/' (`outputs/tiny/stage1`), ends with a known file extension (`my.jinja`,
    FILE_SUFFIXES), or its first part exists here (`checkpoints/stage2` when `checkpoints/` exists)."""
    return _path_by_form(value) or _existing_first_part(value) is not None


def existing_folder(value: str | Path, what: str) -> Path:
    """`value` as a folder that exists; otherwise an InputError naming the argument (`what`) and the path."""
    path = Path(value).expanduser()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "no such folder"
        raise InputError(f"{what}: {value}: {problem}")
    return path


def folder_or_repo_id(value: str, what: str) -> str:
    """A local folder that exists, or a Hub repo id; a mistyped local path (see `is_path_like`) is named at once
    instead of failing later as an unreachable or unknown Hub repo."""
    path = Path(value).expanduser()
    if path.is_dir():
        return value
    if path.exists() or _path_by_form(value):
        existing_folder(value, what)
    if first := _existing_first_part(value):
        raise InputError(f"{what}: {value}: no such folder (read as a local path because {first}/ exists here)")
    return check_repo_id(value, what, hint=" and no such local folder")


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


_REPO_ID = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", re.ASCII)  # huggingface_hub REPO_ID_REGEX


def check_repo_id(value: str, what: str, hint: str = "") -> str:
    """`value` if huggingface_hub would accept it as a repo id ('name' or 'namespace/name'); otherwise an InputError.
    huggingface_hub's `validate_repo_id` rules, restated here so that this module stays on the standard library."""
    if not _REPO_ID.fullmatch(value) or "--" in value or ".." in value or value.endswith(".git"):
        raise InputError(
            f"{what}: {value!r} is not a Hub repo id{hint} (expected 'name' or 'namespace/name': letters, digits, "
            "'-', '_', '.')"
        )
    return value


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
