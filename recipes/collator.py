"""Chat rows -> model inputs: tokenisation, exact assistant-only labels, image-token expansion, padding.

The work is split in two steps so that another batch layout (a packed collator, say) can reuse the first one:

    encoded = collator.encode(rows)      # per row: input_ids, labels, image; validated, never truncated
    batch = collator.pad(encoded)        # right-padded tensors + pixel_values of the rows that have an image

`AllavaCollator(processor, max_length)(rows)` does both. Rows are dataset rows with `id`, `messages` (content parts,
the format of `dataset_scripts/schema.py`) and `images` (a list of zero or one image: PIL, bytes, path, or datasets'
undecoded `{"bytes", "path"}`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from modeling_allava import AllavaProcessor, load_image
from modeling_allava.processing_allava import encode_chats


IGNORE_INDEX = -100
_ROLES = ("system", "user", "assistant")


@dataclass
class EncodedRow:
    """One tokenised row: `labels` equals `input_ids` on assistant tokens and is -100 everywhere else."""

    row_id: str
    input_ids: list[int]
    labels: list[int]
    image: Image.Image | None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class AllavaCollator:
    """Tokenise chat rows with the processor's chat template and train on assistant tokens only.

    Loss counts exactly the `{% generation %}` spans of the template (assistant text plus its end-of-turn token).
    Ids come from `encode_chats`, the function the processor's `apply_chat_template(tokenize=True)` uses too, so a
    prompt at inference is tokenised exactly as the start of its training row. Each `<image>` becomes the processor's
    image-token count; a row longer than `max_length` is an error, never truncated.
    """

    processor: AllavaProcessor
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    image_tokens_per_image: int = field(init=False)

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        if self.processor.chat_template is None:
            raise ValueError("The processor has no chat template; set `chat_template` in the recipe.")
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; load it with load_tokenizer_with_image_token().")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.processor.image_token)
        self.pad_token_id = tokenizer.pad_token_id
        self.image_tokens_per_image = self.processor.image_seq_length

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self.layout(self.encode(rows))

    def layout(self, encoded: Sequence[EncodedRow]) -> dict[str, torch.Tensor]:
        """Encoded rows -> the batch tensors (padded here; packed in `PackedAllavaCollator`)."""
        return self.pad(encoded)

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[EncodedRow]:
        """Render, tokenise and label each row; errors name the row id."""
        row_ids = [str(row.get("id", f"#{index}")) for index, row in enumerate(rows)]
        images = [self._row_image(row, row_id) for row, row_id in zip(rows, row_ids)]
        chats = encode_chats(
            self.processor.tokenizer,
            self.processor.chat_template,
            [row["messages"] for row in rows],
            self.image_token_id,
            self.image_tokens_per_image,
        )
        input_ids = [ids for ids, _ in chats]
        labels = [[token if trained else IGNORE_INDEX for token, trained in zip(*chat)] for chat in chats]
        for row_id, row_labels in zip(row_ids, labels):
            if all(label == IGNORE_INDEX for label in row_labels):
                raise ValueError(f"row {row_id!r}: no assistant turn to train on")

        encoded = []
        for row_id, ids, row_labels, image in zip(row_ids, input_ids, labels, images):
            found = ids.count(self.image_token_id) // max(self.image_tokens_per_image, 1)
            if found != int(image is not None):
                raise ValueError(
                    f"row {row_id!r}: the chat template wrote {found} <image> placeholder(s) for "
                    f"{int(image is not None)} image(s); put exactly one {{'type': 'image'}} part per image"
                )
            if self.max_length is not None and len(ids) > self.max_length:
                raise ValueError(
                    f"row {row_id!r}: {len(ids)} tokens (image tokens included) exceed max_length={self.max_length}; "
                    "raise max_length or drop the row (rows are never truncated: a cut image would corrupt training)"
                )
            encoded.append(EncodedRow(row_id, ids, row_labels, image))
        return encoded

    def pad(self, encoded: Sequence[EncodedRow]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest row (or the next multiple of `pad_to_multiple_of`); images in row order."""
        length = max(len(row) for row in encoded)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(encoded), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for index, row in enumerate(encoded):
            input_ids[index, : len(row)] = torch.tensor(row.input_ids)
            labels[index, : len(row)] = torch.tensor(row.labels)
            attention_mask[index, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        images = [row.image for row in encoded if row.image is not None]
        if images:
            batch["pixel_values"] = self.pixel_values(images)
        return batch

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images (already RGB) into one `[n_images, 3, H, W]` tensor, in the order given."""
        return self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    def _row_image(self, row: Mapping[str, Any], row_id: str) -> Image.Image | None:
        messages, images = row.get("messages"), row.get("images")
        if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
            raise ValueError(f"row {row_id!r}: field 'messages' must be a non-empty list of {{role, content}} dicts")
        image_parts = 0
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
                raise ValueError(f"row {row_id!r}: field 'messages[{index}].role' must be one of {_ROLES}")
            content = message.get("content")
            if not isinstance(content, (str, Sequence)):
                raise ValueError(f"row {row_id!r}: field 'messages[{index}].content' must be a string or parts")
            if not isinstance(content, str):
                image_parts += sum(isinstance(part, Mapping) and part.get("type") == "image" for part in content)
        images = list(images or [])
        if len(images) > 1 or image_parts != len(images):
            raise ValueError(
                f"row {row_id!r}: field 'images' holds {len(images)} image(s) but 'messages' has {image_parts} "
                "image part(s); ALLaVA rows have zero or one image"
            )
        if not images:
            return None
        image = images[0]
        if isinstance(image, Mapping):  # datasets' undecoded Image: {"bytes": ..., "path": ...}
            image = image.get("bytes") or image.get("path")
        return load_image(image, where=f"row {row_id!r} images[0]")
