"""A dual encoder with both towers (CLIP or SigLIP) through transformers' AutoModel + AutoProcessor, for the
image-text audit (dataset_scripts/audit.py).

Texts longer than the text tower's context (CLIP 77 tokens, SigLIP 64) are cut by the tokenizer to their first
`context` tokens (special tokens included): the start of a caption or of a question and its answer is what gets
checked. `texts` also returns each text's token count before the cut, so the audit can say which rows were cut.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from modeling_allava.processing_allava import open_image


class DualEncoder(Protocol):
    context: int  # text tokens the encoder sees

    def images(self, images: list[bytes]) -> np.ndarray:
        """(n, d) L2-normalised image features."""

    def texts(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """(n, d) L2-normalised text features, and each text's token count before the cut."""


def normalised(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _features(output) -> object:
    """get_*_features returns a tensor (transformers 4) or an output whose pooler_output holds it (5)."""
    return getattr(output, "pooler_output", output)


class HFDualEncoder:
    """`AutoModel.from_pretrained(name)` (CLIPModel, SiglipModel, ...) and `AutoProcessor`: a folder or a Hub id."""

    def __init__(self, name: str, device: str = "auto") -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModel.from_pretrained(name, dtype=dtype).to(self.device).eval()
        if not (hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")):
            raise ValueError(f"--model {name}: {type(self.model).__name__} is not a dual encoder with both towers")
        self.processor = AutoProcessor.from_pretrained(name)
        self.context = int(self.model.config.text_config.max_position_embeddings)
        # SigLIP was trained on texts padded to its full context; CLIP pools at the end token, so any padding works
        self.padding = "max_length" if "siglip" in self.model.config.model_type else True

    def images(self, images: list[bytes]) -> np.ndarray:
        pictures = []
        for number, data in enumerate(images):
            with open_image(data, f"image {number} of the batch") as image:
                pictures.append(image.convert("RGB"))
        inputs = self.processor(images=pictures, return_tensors="pt").to(self.device)
        with self.torch.inference_mode():
            output = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.model.dtype))
        return normalised(_features(output).float().cpu().numpy())

    def texts(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        tokenizer = self.processor.tokenizer
        lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
        inputs = tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self.context, return_tensors="pt"
        ).to(self.device)
        with self.torch.inference_mode():
            output = self.model.get_text_features(**{k: v for k, v in inputs.items() if k != "token_type_ids"})
        return normalised(_features(output).float().cpu().numpy()), lengths
