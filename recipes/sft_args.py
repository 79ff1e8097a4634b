"""Checks on what `recipes/sft.py` is given (recipe YAML and command line) before anything heavy runs.

Two passes. `precheck` needs no torch or transformers: the recipe file parses, path-like values exist, no value
carries a stray control character. `check_settings` runs once the argument dataclasses are importable: every key is
a known setting (else the closest one is named), YAML values have the field's type and sane ranges. Each failure is
an `InputError` naming the file or flag and the field.

Path-like values follow `toolkit.cli.is_path_like` (`./x`, `outputs/tiny/stage1`, `my.jinja`; `org/name` is a hub id);
a value that is not path-like may still be a local folder (transformers and datasets try that first).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from toolkit.cli import InputError, is_path_like


MODEL_FIELDS = ("model_name_or_path", "vision_model_name_or_path", "text_model_name_or_path")
RESUME_LATEST = ("latest", "true", "True")
# Fields whose value must fall in a range; the check reads the raw value (YAML or command line) before parsing.
RANGES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    "max_length": (lambda v: v >= 1 and v == int(v), "a whole number >= 1 (or null: no limit)"),
    "max_steps": (lambda v: (v >= 1 or v == -1) and v == int(v), "a whole number >= 1 (or -1: num_train_epochs)"),
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "num_train_epochs": (lambda v: v > 0, "a number > 0"),
    "per_device_train_batch_size": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "save_steps": (lambda v: v > 0, "a number > 0"),
    "logging_steps": (lambda v: v > 0, "a number > 0"),
    "warmup_steps": (lambda v: v >= 0, "a number >= 0"),
}
NULLABLE = {"max_length"}


def split_arguments(argv: list[str]) -> tuple[str | None, dict[str, list[str]]]:
    """`--config` and every `--key value...` of the command line (`--key=value` too), as typed."""
    options: dict[str, list[str]] = {}
    key = None
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            key, has_value, value = token[2:].partition("=")
            options[key] = [value] if has_value else []
        elif key is not None:
            options[key].append(token)
    config = options.pop("config", None)
    if config is not None and len(config) != 1:
        raise InputError("--config takes one recipe file: --config recipes/<name>/<stage>.yaml")
    return (config[0] if config else None), options


def read_recipe(path: str) -> dict[str, Any]:
    """The recipe YAML as a mapping; a missing, unreadable or malformed file is one error naming it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"--config {path}: no such file")
    try:
        recipe = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: invalid YAML ({getattr(error, 'problem', None) or error})") from error
    if not isinstance(recipe, dict):
        raise InputError(f"{path}: expected a mapping of settings (key: value), got {type(recipe).__name__}")
    return recipe


def precheck(argv: list[str]) -> None:
    """The checks that need no heavy import: recipe file, control characters, local paths that do not exist."""
    config, options = split_arguments(argv)
    recipe = read_recipe(config) if config else {}
    where = {key: config for key in recipe} | {key: "command line" for key in options}
    for key, value in [*recipe.items(), *options.items()]:
        _check_characters(key, value, where[key])
    values = {**recipe, **{key: tokens[-1] for key, tokens in options.items() if tokens}}
    for key in MODEL_FIELDS:
        _check_path(key, values.get(key), where.get(key))
    template = values.get("chat_template")
    _check_path("chat_template", template, where.get("chat_template"))
    resume = values.get("resume_from_checkpoint")
    if isinstance(resume, str) and resume not in RESUME_LATEST and not Path(resume).expanduser().is_dir():
        raise InputError(
            f"resume_from_checkpoint ({where['resume_from_checkpoint']}): {resume!r} is not a folder; give a "
            "checkpoint-N folder or 'latest'"
        )
    mixture = options.get("dataset_mixture", recipe.get("dataset_mixture"))
    if isinstance(mixture, list):
        for index, entry in enumerate(mixture):
            try:
                entry = mixture_entry(entry, index)
            except InputError:
                continue  # reported when the mixture is parsed
            if isinstance(entry, Mapping):
                _check_path(f"dataset_mixture[{index}].path", entry.get("path"), where["dataset_mixture"])


def mixture_entry(entry: Any, index: int) -> Any:
    """A mixture entry as given in the recipe, or parsed from its JSON on the command line."""
    if not isinstance(entry, str):
        return entry
    try:
        return json.loads(entry)
    except json.JSONDecodeError as error:
        raise InputError(
            f"dataset_mixture[{index}]: not a JSON object: {entry!r} ({error}); on the command line give one JSON "
            'object per entry, e.g. \'{"path": "data/allava4v", "name": "text"}\''
        ) from error


def _check_path(field: str, value: Any, where: str | None) -> None:
    if isinstance(value, str) and is_path_like(value) and not Path(value).expanduser().exists():
        raise InputError(f"{field} ({where}): {value!r} does not exist (a local path; hub ids look like org/name)")


def _check_characters(key: str, value: Any, where: str) -> None:
    """Names and values with control characters (a CR from a Windows-edited file) are never what was meant."""
    for text in _strings(value):
        if any(ord(char) < 32 for char in text):
            raise InputError(
                f"{key} ({where}): {text!r} contains a control character (Windows line endings in the file or "
                "script it came from?)"
            )


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def check_settings(argv: list[str], known: Mapping[str, Any], flags: Iterable[str]) -> None:
    """Unknown keys (with the closest valid one), YAML values of the wrong type, out-of-range numbers.

    `known`: setting name -> annotation (the dataclass fields); `flags`: every accepted `--flag` spelling.
    """
    config, options = split_arguments(argv)
    recipe = read_recipe(config) if config else {}
    for key in recipe:
        if key != "env":
            _check_known(key, known, config)
    flags = set(flags)
    for key in options:
        if key not in flags and key not in ("h", "help"):
            _check_known(key, {flag: None for flag in flags}, "command line")
    for key, value in recipe.items():
        if key in known and key != "dataset_mixture" and not _matches(value, known[key]):
            raise InputError(f"{key} ({config}): expected {_describe(known[key])}, got {_shown(value)}")
    if "dataset_mixture" in recipe and not isinstance(recipe["dataset_mixture"], list):
        raise InputError(mixture_not_a_list(recipe["dataset_mixture"], config))
    values = {key: (recipe[key], config) for key in recipe}
    values |= {key: (tokens[-1], "command line") for key, tokens in options.items() if len(tokens) == 1}
    for key, (rule, expected) in RANGES.items():
        if key not in values:
            continue
        value, where = values[key]
        if value is None and key in NULLABLE:
            continue
        number = _number(value)
        if number is not None and not rule(number):
            raise InputError(f"{key} ({where}): must be {expected}, got {_shown(value)}")


def mixture_not_a_list(value: Any, where: str | None) -> str:
    return (
        f"dataset_mixture ({where}): expected a list of {{path, name, split, take_fraction, epochs}} entries, got "
        f"{value!r}; write one entry per line, e.g. `- {{path: {value if isinstance(value, str) else '...'}}}`"
    )


def _check_known(key: str, known: Mapping[str, Any], where: str | None) -> None:
    if key in known:
        return
    close = difflib.get_close_matches(key.strip(), list(known), n=1, cutoff=0.6)
    odd = [char for char in key if ord(char) > 127 or ord(char) < 32]
    note = f" (it contains {', '.join(repr(char) for char in odd)})" if odd else ""
    hint = f"; did you mean {close[0]!r}?" if close else "; see `python recipes/sft.py --help`"
    raise InputError(f"{where}: unknown setting {key!r}{note}{hint}")


def _shown(value: Any) -> str:
    """A value as the recipe spells it (null, true), else its repr."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return repr(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a type error, reported by the type check or argparse


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a dataclass annotation; annotations it does not know are left to the parser."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is None:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))
    if annotation in (int, float):
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return annotation is float or isinstance(value, int)
        return isinstance(value, str) and _parses(value, annotation)
    if annotation is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return value in {member.value for member in annotation} or isinstance(value, annotation)
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        return isinstance(value, (list, tuple)) and (not args or all(_matches(item, args[0]) for item in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def _parses(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _describe(annotation: Any) -> str:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    base = args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args else annotation
    name = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(base)
    if name is None:
        name = getattr(base, "__name__", str(base))
    return name + (" or null" if type(None) in typing.get_args(annotation) else "")


def field_types(dataclass_types: Iterable[type]) -> dict[str, Any]:
    """Setting name -> resolved annotation, for every init field of the argument dataclasses."""
    known: dict[str, Any] = {}
    for cls in dataclass_types:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an unresolvable forward reference somewhere: fall back to no type check for this class
            hints = {}
        for field in dataclasses.fields(cls):
            if field.init:
                known[field.name] = hints.get(field.name, Any)
    return known


RESUME_HELP = (
    "Continue from a checkpoint: a checkpoint-N folder, or 'latest' (the newest complete checkpoint in output_dir). "
    "Without it, an output_dir holding complete checkpoints resumes from the newest one anyway; "
    "--overwrite_output_dir true starts over."
)


def parse_checked(dataclass_types: tuple[type, ...], argv: list[str]) -> tuple:
    """TRL's parser (recipe YAML via `--config`, flags override it) after `check_settings`; `--help` lists
    `--config` and the resume rules. One instance per dataclass, in order."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types)
    parser.add_argument(
        "--config",
        metavar="RECIPE_YAML",
        help="Recipe file (e.g. recipes/allava-phi2/pretrain.yaml) setting any option below; flags override it.",
    )
    for action in parser._actions:
        if action.dest == "resume_from_checkpoint":
            action.help = RESUME_HELP
    flags = {option[2:] for action in parser._actions for option in action.option_strings if option.startswith("--")}
    check_settings(argv, field_types(dataclass_types), flags)
    try:
        parsed = parser.parse_args_and_config(argv)
    except InputError:
        raise
    except ValueError as error:  # the dataclasses' own checks (TrainingArguments.__post_init__ and the like)
        raise InputError(" ".join(str(error).split())) from error
    return tuple(parsed[: len(dataclass_types)])  # one more item is the namespace holding `--config`
