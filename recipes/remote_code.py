"""Loading checkpoints without running code they carry, unless the user asked for it.

ALLaVA checkpoints (`model_type: allava`) always load with the installed classes (importing modeling_allava registers
them with the Auto classes), whatever `auto_map` says. Any other checkpoint whose classes live in its own `auto_map`
modules runs that code only with an explicit `--trust-remote-code`, as transformers users expect.
"""

from __future__ import annotations

import argparse


class RemoteCodeRefusedError(ValueError):
    """The checkpoint needs its own code to load and --trust-remote-code was not given."""


def add_trust_remote_code_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the Python code a non-ALLaVA checkpoint ships in its auto_map (ALLaVA checkpoints never need it)",
    )


def _model_type(name_or_path: str) -> str | None:
    """The checkpoint's `model_type`, read from its config.json without importing anything it names."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(name_or_path)
    except OSError:
        return None  # no config.json (e.g. a processor-only folder): let from_pretrained report it
    return config.get("model_type")


def load_pretrained(
    auto_class, name_or_path: str, trust_remote_code: bool = False, checkpoint: str | None = None, **kwargs
):
    """`auto_class.from_pretrained`, running checkpoint code only for a non-ALLaVA checkpoint and only if trusted.

    `checkpoint` is the folder whose config.json says what the model is, when `name_or_path` has none (a processor
    saved next to a LoRA adapter)."""
    import modeling_allava  # noqa: F401  (registers the ALLaVA classes with the Auto classes)

    model_type = _model_type(checkpoint or name_or_path)
    trusted = trust_remote_code and model_type != "allava"
    try:
        return auto_class.from_pretrained(name_or_path, trust_remote_code=trusted, **kwargs)
    except ValueError as error:
        if trusted or "trust_remote_code" not in str(error):
            raise
        raise RemoteCodeRefusedError(
            f"{name_or_path}: model_type {model_type!r} is not ALLaVA and loading it runs code from "
            "the checkpoint; pass --trust-remote-code if you trust its source."
        ) from None
