"""Keeping secrets out of messages: the one scrubber every client we own (synthesis, judge, Hub) uses for errors."""

from __future__ import annotations

import re
from collections.abc import Iterable


# What a leaked credential looks like even when we were not told the exact value: an `Authorization: Bearer ...`
# header, an OpenAI-style key (`sk-...`) and a Hugging Face token (`hf_...`).
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_TOKEN_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,})")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the given secrets and anything shaped like a bearer token, OpenAI key or HF token masked as ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    return _TOKEN_SHAPES.sub("***", text)


def describe_error(error: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """`Type: message` of an exception, scrubbed: what gets logged or stored in place of the raw exception."""
    return scrub(f"{type(error).__name__}: {error}", secrets)


__all__ = ["describe_error", "scrub"]
