"""What identifies a record and what exactly is sent for it.

A record's key hashes the input content (image bytes or instruction) with everything that shapes the reply: mode,
strategy, prompt version and hash, teacher model and sampling parameters. Same key = same work, so a restarted or
repeated run never pays twice, and identical images under different names are synthesised once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from dataset_scripts.images import PreparedImage
from dataset_scripts.limits import estimate_image_tokens, estimate_text_tokens
from dataset_scripts.prompt_set import PromptSet, fill


@dataclass(frozen=True)
class TaskSpec:
    """The recipe every record of a run shares."""

    mode: str
    strategy: str
    model: str
    prompts: PromptSet
    sampling: dict = field(default_factory=dict)
    detail: str = "auto"

    @property
    def templates(self) -> tuple[str, ...]:
        return self.prompts.plan(self.mode, self.strategy)

    @cached_property
    def prompt_hash(self) -> str:
        return self.prompts.hash_for(self.mode, self.strategy)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the recipe; records of other recipes in the same folder are ignored on resume."""
        recipe = {
            "mode": self.mode,
            "strategy": self.strategy,
            "model": self.model,
            "prompt_version": self.prompts.version,
            "prompt_hash": self.prompt_hash,
            "sampling": self.sampling,
            "detail": self.detail,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def key(self, image: PreparedImage | None, question: str | None) -> str:
        """hash(content, recipe): content is the image's original bytes and/or the instruction text."""
        parts = [self.fingerprint, image.source_sha256 if image else "", question or ""]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]

    def messages(
        self,
        template: str,
        image: PreparedImage | None,
        instruction: str | None = None,
        description: str | None = None,
    ) -> list[dict]:
        """Chat messages for one template: the prompt, then the image (text mode: system prompt, then instruction).

        The fixed instruction goes first so that every request of a run shares the longest possible prefix, which
        providers' automatic prefix caching bills at the cached rate; the image and any filled-in text vary.
        """
        text = self.prompts.templates[template]
        if template == "text":
            return [{"role": "system", "content": text}, {"role": "user", "content": instruction or ""}]
        if template == "vflan":
            text = fill(text, instruction=instruction or "")
        elif template == "qa_from_caption":
            text = fill(text, description=description or "")
        if image is None:
            raise ValueError(f"template {template!r} needs an image")
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": image.data_url(), "detail": self.detail}},
                ],
            }
        ]

    def estimate_prompt_tokens(self, messages: list[dict], image: PreparedImage | None) -> int:
        """Upper-ish bound on prompt tokens (text at 3 chars/token, images by OpenAI's tile rule)."""
        total = 0
        for message in messages:
            content = message["content"]
            parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
            total += sum(estimate_text_tokens(part) for part in parts if part)
        if image is not None:
            total += estimate_image_tokens(image.width, image.height, self.detail)
        return total
