"""Parse and validate teacher replies: tagged sections in, checked fields out, or a rejection with a reason.

A record is only as good as its weakest section, so every reply must have all sections its template asks for, exactly
five candidate questions where asked, no refusal and no trace of the prompt (the student never sees the prompt or
the description when it answers, so an answer that mentions them teaches the wrong thing).
"""

from __future__ import annotations

import re


SECTIONS: dict[str, tuple[str, ...]] = {
    "caption_qa": ("description", "candidate questions", "question", "answer"),
    "caption": ("description",),
    "qa_from_caption": ("candidate questions", "question", "answer"),
    "qa_direct": ("candidate questions", "question", "answer"),
    "vflan": ("description", "detailed answer"),
    "text": (),
}
NUM_CANDIDATES = 5
REJECT_REASONS = (
    "empty",
    "refusal",
    "missing_section",
    "empty_section",
    "candidates",
    "leakage",
    "truncated",
    "too_long",
    "invalid_response",
)
# A reply may hold at most this many characters per `max_tokens` token: real tokens average about 4, so 16 leaves a
# wide margin while a runaway or hostile reply (megabytes of text) is rejected before it is parsed or stored.
CHARS_PER_TOKEN_CAP = 16
MIN_REPLY_CHARS = 4096

_TAG_RE = re.compile(r"<(start|end) of ([a-z ]+?)>", re.IGNORECASE)
_NUMBERED_RE = re.compile(r"^\s*(?:\(?\d+[.):]|[-*\u2022])\s*")
_REFUSAL_RE = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry,|i apologi[sz]e|as an ai\b|i (?:can ?not|can't|won't) (?:help|assist|comply|"
    r"provide|describe|answer|do that|fulfil)|i(?:'m| am) (?:unable|not able))",
    re.IGNORECASE,
)
# Anywhere in any section: pieces of the prompt itself.
_ALWAYS_LEAKS = ("<start of", "<end of", "prompt id:", "allava/")
# In what the student will be trained to produce from the image alone: references to text it never sees.
_ANSWER_LEAKS = (
    "the description",
    "reference description",
    "the caption",
    "these instructions",
    "the instructions above",
    "candidate question",
    "candidate list",
)


class Rejected(ValueError):
    """A reply that cannot become a record; `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def reply_char_limit(max_tokens: int) -> int:
    """The longest reply accepted for a request capped at `max_tokens` completion tokens."""
    return max(MIN_REPLY_CHARS, CHARS_PER_TOKEN_CAP * max(0, max_tokens))


def extract_sections(text: str) -> dict[str, str]:
    """All `<start of X> ... <end of X>` sections (first occurrence of each name wins), names lower-cased.

    Linear time: one pass collects the tags, a second pairs each start tag with the first matching end tag after it
    (a start tag inside an already paired section is part of its body). A backtracking regex did the same pairing
    in quadratic time on replies full of unclosed tags.
    """
    tags = [(match.start(), match.end(), match[1].lower(), match[2]) for match in _TAG_RE.finditer(text)]
    ends: dict[str, list[tuple[int, int]]] = {}
    for start, end, kind, name in tags:
        if kind == "end":
            ends.setdefault(name.lower(), []).append((start, end))
    cursor = dict.fromkeys(ends, 0)  # per name: the first end tag not yet behind us (start tags only move forward)
    sections: dict[str, str] = {}
    consumed = 0
    for start, end, kind, name in tags:
        key = name.lower()
        if kind != "start" or start < consumed or key not in ends:
            continue
        candidates, index = ends[key], cursor[key]
        while index < len(candidates) and candidates[index][0] < end:
            index += 1
        cursor[key] = index
        if index == len(candidates):
            continue  # never closed
        close_start, close_end = candidates[index]
        sections.setdefault(name.strip().lower(), text[end:close_start].strip())
        consumed = close_end
    return sections


def parse_candidates(text: str) -> list[str]:
    """One question per non-empty line, list numbering or bullets removed."""
    return [_NUMBERED_RE.sub("", line).strip() for line in text.splitlines() if _NUMBERED_RE.sub("", line).strip()]


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL_RE.match(text))


def _check_leaks(name: str, value: str, answer_side: bool) -> None:
    lowered = value.lower()
    patterns = _ALWAYS_LEAKS + (_ANSWER_LEAKS if answer_side else ())
    for pattern in patterns:
        if pattern in lowered:
            raise Rejected("leakage", f"section {name!r} contains {pattern!r}")


def parse_reply(template: str, text: str, max_chars: int | None = None) -> dict:
    """Fields of a reply to `template`: description / candidates / question / answer, as the template asks.

    A reply longer than `max_chars` (see `reply_char_limit`) is rejected as `too_long` before anything else.
    """
    if template not in SECTIONS:
        raise ValueError(f"unknown template {template!r}")
    text = text or ""
    if max_chars is not None and len(text) > max_chars:
        raise Rejected("too_long", f"the reply has {len(text)} characters, more than the {max_chars} allowed")
    text = text.strip()
    if not text:
        raise Rejected("empty", "the reply is empty")
    if is_refusal(text):
        raise Rejected("refusal", text[:120])
    names = SECTIONS[template]
    if not names:
        _check_leaks("answer", text, answer_side=False)
        return {"answer": text}
    sections = extract_sections(text)
    missing = [name for name in names if name not in sections]
    if missing:
        raise Rejected("missing_section", f"missing {missing}")
    fields: dict = {}
    for name in names:
        value = sections[name]
        if not value:
            raise Rejected("empty_section", f"section {name!r} is empty")
        if is_refusal(value):
            raise Rejected("refusal", f"section {name!r}: {value[:120]}")
        _check_leaks(name, value, answer_side=name != "description")
        if name == "candidate questions":
            candidates = parse_candidates(value)
            if len(candidates) != NUM_CANDIDATES:
                raise Rejected("candidates", f"expected {NUM_CANDIDATES} candidate questions, got {len(candidates)}")
            fields["candidates"] = candidates
        else:
            fields["answer" if name == "detailed answer" else name] = value
    return fields
