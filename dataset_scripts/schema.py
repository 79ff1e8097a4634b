"""THE ALLaVA record format: dataset columns, subset names and the conversations <-> messages conversion.

Every dataset this repo writes or reads (synthesised, imported from the ALLaVA-4V release, consumed by the training
recipes) goes through this module, so the two chat representations can never drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dataset_scripts.prompt_set import MODES
from modeling_allava.processing_allava import IMAGE_TOKEN


if TYPE_CHECKING:
    from datasets import Features

SPLIT = "train"
SUBSET_KINDS = ("caption", "instruct", "text")
# Source names become part of subset names and row ids, so keep them to lowercase letters and digits.
SOURCE_PATTERN = re.compile(r"^[a-z0-9]+$")
# The subsets of the ALLaVA-4V release (plus the procedurally generated shapes world used by tests and the demo).
KNOWN_SUBSETS = (
    "caption_laion",
    "instruct_laion",
    "caption_vflan",
    "instruct_vflan",
    "text",
    "caption_shapes",
    "instruct_shapes",
)
# `mode` says how a row was made (synthesize.py --mode, one of MODES): vflan rows share their `<kind>_<source>`
# subsets with caption-qa ones when both runs use the same --source-name.
PROVENANCE_COLUMNS = (
    "source",
    "mode",
    "teacher_model",
    "prompt_version",
    "prompt_hash",
    "origin",
    "original_caption",
)
COLUMNS = ("id", "image", "conversations", "messages", "images", *PROVENANCE_COLUMNS)

_ROLE_OF = {"human": "user", "gpt": "assistant"}
_FROM_OF = {role: speaker for speaker, role in _ROLE_OF.items()}


def _build_features() -> Features:
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "image": Image(),
            "conversations": List({"from": Value("string"), "value": Value("string")}),
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "images": List(Image()),
            "source": Value("string"),
            "mode": Value("string"),
            "teacher_model": Value("string"),
            "prompt_version": Value("string"),
            "prompt_hash": Value("string"),
            "origin": Value("string"),
            "original_caption": Value("string"),
        }
    )


def __getattr__(name: str) -> Any:
    # `FEATURES` is built on first use: `datasets` takes seconds to import and the synthesis CLI never needs it.
    if name == "FEATURES":
        globals()["FEATURES"] = features = _build_features()
        return features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def subset_name(kind: str, source: str) -> str:
    """Name of the config a sample belongs to: `<kind>_<source>` for image data, `text` for text-only data."""
    if kind not in SUBSET_KINDS:
        raise ValueError(f"unknown subset kind {kind!r}; expected one of {SUBSET_KINDS}")
    if kind == "text":
        return "text"
    check_source_name(source)
    return f"{kind}_{source}"


def check_source_name(source: str) -> str:
    """Reject source names that would produce odd config names or ids."""
    if not isinstance(source, str) or not SOURCE_PATTERN.match(source):
        raise ValueError(f"source name {source!r} must be lowercase letters and digits only (e.g. 'laion', 'shapes')")
    return source


def _where(row_id: str | None) -> str:
    return f"row {row_id!r}" if row_id is not None else "row"


def conversations_to_messages(
    conversations: Sequence[Mapping[str, Any]], has_image: bool, row_id: str | None = None
) -> list[dict]:
    """ALLaVA/LLaVA `[{from, value}]` turns -> TRL chat messages with typed content parts.

    The `<image>` placeholder of the first human turn becomes one `{"type": "image"}` part placed first, which is what
    processors' chat templates expect; any disagreement between the placeholder and `has_image` is a data error.
    """
    where = _where(row_id)
    if not isinstance(conversations, Sequence) or isinstance(conversations, str) or not conversations:
        raise ValueError(f"{where}: field 'conversations' must be a non-empty list of {{from, value}} turns")
    messages = []
    image_seen = False
    for index, turn in enumerate(conversations):
        field = f"conversations[{index}]"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where}: field '{field}' must be a dict with 'from' and 'value'")
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in _ROLE_OF:
            raise ValueError(f"{where}: field '{field}.from' is {speaker!r}; expected 'human' or 'gpt'")
        if not isinstance(value, str):
            raise ValueError(f"{where}: field '{field}.value' must be a string, got {type(value).__name__}")
        expected = "human" if index % 2 == 0 else "gpt"
        if speaker != expected:
            raise ValueError(f"{where}: field '{field}.from' is {speaker!r}; turns must alternate human, gpt, ...")
        count = value.count(IMAGE_TOKEN)
        if count and (index != 0 or count > 1):
            raise ValueError(f"{where}: field '{field}.value' holds an extra {IMAGE_TOKEN}; only one image per row")
        content: list[dict] = []
        if count:
            image_seen = True
            content.append({"type": "image"})
            before, after = value.split(IMAGE_TOKEN, 1)
            value = "\n".join(part for part in (before.rstrip("\n "), after.lstrip("\n ")) if part)
        content.append({"type": "text", "text": value})
        messages.append({"role": _ROLE_OF[speaker], "content": content})
    if image_seen and not has_image:
        raise ValueError(f"{where}: field 'conversations[0].value' has {IMAGE_TOKEN} but field 'image' is empty")
    if has_image and not image_seen:
        raise ValueError(f"{where}: field 'image' is set but 'conversations[0].value' has no {IMAGE_TOKEN}")
    return messages


def messages_to_conversations(messages: Sequence[Mapping[str, Any]], row_id: str | None = None) -> list[dict]:
    """Inverse of `conversations_to_messages`: the image part becomes `<image>\\n` at the start of the turn."""
    where = _where(row_id)
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ValueError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} messages")
    conversations = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _FROM_OF:
            raise ValueError(f"{where}: field '{field}.role' is {role!r}; expected 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            conversations.append({"from": _FROM_OF[role], "value": content})
            continue
        if not isinstance(content, Sequence):
            raise ValueError(f"{where}: field '{field}.content' must be a string or a list of parts")
        texts, images = [], 0
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image":
                images += 1
            elif kind == "text":
                texts.append(part.get("text") or "")
            else:
                raise ValueError(f"{where}: field '{field}.content' has a part of type {kind!r}")
        if images > 1 or (images and role != "user"):
            raise ValueError(f"{where}: field '{field}.content' has an image where none is allowed")
        value = "\n".join(texts)
        conversations.append({"from": _FROM_OF[role], "value": f"{IMAGE_TOKEN}\n{value}" if images else value})
    return conversations


def make_row(
    row_id: str,
    conversations: list[dict],
    image_bytes: bytes | None,
    *,
    source: str,
    teacher_model: str | None,
    prompt_version: str | None,
    prompt_hash: str | None,
    origin: str | None,
    original_caption: str | None = None,
    mode: str | None = None,
) -> dict:
    """One dataset row in the released ALLaVA schema plus the TRL-ready `messages`/`images` and provenance."""
    has_image = image_bytes is not None
    image = {"bytes": image_bytes, "path": None} if has_image else None
    row = {
        "id": row_id,
        "image": image,
        "conversations": [{"from": turn["from"], "value": turn["value"]} for turn in conversations],
        "messages": conversations_to_messages(conversations, has_image, row_id),
        "images": [image] if has_image else [],
        "source": source,
        "mode": mode,
        "teacher_model": teacher_model,
        "prompt_version": prompt_version,
        "prompt_hash": prompt_hash,
        "origin": origin,
        "original_caption": original_caption,
    }
    validate_row(row, row_id)
    return row


def validate_row(row: Mapping[str, Any], where: str) -> None:
    """Check a row against FEATURES and the image/conversation invariants; the error names the row and field."""
    missing = [name for name in COLUMNS if name not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    row_id = row["id"]
    if not isinstance(row_id, str) or not row_id:
        raise ValueError(f"{where}: field 'id' must be a non-empty string")
    has_image = row["image"] is not None
    images = row["images"]
    if not isinstance(images, Sequence) or len(images) != int(has_image):
        raise ValueError(f"{where} (id {row_id!r}): field 'images' must hold exactly the row's image (0 or 1 items)")
    expected = conversations_to_messages(row["conversations"], has_image, row_id)
    if _normalise_messages(row["messages"]) != _normalise_messages(expected):
        raise ValueError(f"{where} (id {row_id!r}): field 'messages' does not match field 'conversations'")
    check_source_name(row["source"])
    for name in PROVENANCE_COLUMNS[1:]:
        if row[name] is not None and not isinstance(row[name], str):
            raise ValueError(f"{where} (id {row_id!r}): field {name!r} must be a string or None")
    if row["mode"] is not None and row["mode"] not in MODES:
        raise ValueError(f"{where} (id {row_id!r}): field 'mode' is {row['mode']!r}; expected one of {MODES}")


def _normalise_messages(messages: Sequence[Mapping[str, Any]]) -> list:
    # Parquet round trips add `text: None` to image parts; compare content, not representation.
    return [
        (m.get("role"), [(p.get("type"), p.get("text")) for p in m.get("content") or []])
        if isinstance(m, Mapping)
        else m
        for m in messages
    ]
