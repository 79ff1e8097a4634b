"""ALLaVA processor: LLaVA-1.5 image preprocessing, exact image-token count, ALLaVA's chat formats, safe images."""

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import AutoConfig, AutoTokenizer, BatchFeature, LlavaProcessor
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    get_image_size,
    to_numpy_array,
)
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
from transformers.processing_utils import MultiModalData
from transformers.utils.chat_template_utils import render_jinja_template

from .configuration_allava import AllavaConfig, backbone_template, has_cls_token, image_seq_length


# The chat templates, by name: the `.jinja` files next to this module (see TEXT_BACKBONES for which backbone uses
# which). Inside a checkpoint (remote code) there are none and none are needed: a saved processor carries its template.
CHAT_TEMPLATES = {path.stem: path.read_text(encoding="utf-8") for path in Path(__file__).parent.glob("*.jinja")}

IMAGE_TOKEN = "<image>"
# The pixel budget of every image this repo reads (processor, synthesis, importer, benchmarks), checked from the
# header before decoding: a 161 KiB PNG can claim 13000x13000 and unpack to 2.9 GiB. The default is Pillow's own
# warning threshold (~89.5 MP); the environment variable changes it for every reader at once.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_PIXELS_ENV = "ALLAVA_MAX_IMAGE_PIXELS"


class ImageTooLargeError(ValueError):
    """The image claims more pixels than the budget allows; it was not decoded."""


def max_image_pixels() -> int:
    """The pixel budget: $ALLAVA_MAX_IMAGE_PIXELS if set (a positive integer), else DEFAULT_MAX_IMAGE_PIXELS."""
    value = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"${MAX_IMAGE_PIXELS_ENV} must be a positive integer, got {value!r}.")
    return int(value)


def check_pixel_budget(image: Image.Image, where: str, max_pixels: int | None = None) -> None:
    """Refuse an image over the pixel budget; needs only the header, so call it before `load()`."""
    budget = max_image_pixels() if max_pixels is None else max_pixels
    if image.width * image.height > budget:
        raise ImageTooLargeError(
            f"{where}: image is {image.width}x{image.height} pixels, over the limit of {budget} "
            f"(decompression-bomb guard; ${MAX_IMAGE_PIXELS_ENV} sets it); downscale it first."
        )


def open_image(
    source,
    where: str = "image",
    max_pixels: int | None = None,
    decode: Callable[[Image.Image], None] = Image.Image.load,
) -> Image.Image:
    """Open a path or bytes, check the pixel budget and size from the header, then `decode` (truncation shows here).

    The one image-safety check: every reader of untrusted images goes through it. `decode` is a full `load()` unless
    the caller proves the file whole more cheaply (synthesis sends files byte for byte). Returns the image in its own
    mode (with `format` set); raises ImageTooLargeError, or ValueError naming `where` for anything unreadable.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own budget decides, below
            image = Image.open(source)
        check_pixel_budget(image, where, max_pixels)
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{where}: image has zero size ({image.width}x{image.height}).")
        decode(image)
    except Image.DecompressionBombError as error:  # beyond twice Pillow's limit: refused inside Image.open
        raise ImageTooLargeError(f"{where}: {error}") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise ValueError(f"{where}: cannot read image ({error})") from None
    return image


def load_tokenizer_with_image_token(name_or_path: str, **kwargs):
    """Load a backbone's tokenizer with `<image>` as one special token and a pad token (eos if it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _to_rgb(image: Image.Image, where: str) -> Image.Image:
    """Convert any Pillow mode to RGB the way ALLaVA expects (alpha composited on white, 16-bit scaled down)."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{where}: image has zero size ({image.width}x{image.height}).")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def load_image(image, where: str = "image") -> Image.Image:
    """Open a PIL image, path or bytes fully and safely; every failure is a ValueError naming `where`."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        image = open_image(image, where)
    if not isinstance(image, Image.Image):
        raise ValueError(f"{where}: expected a PIL image, a path or bytes, got {type(image).__name__}.")
    check_pixel_budget(image, where)  # a lazily opened PIL image is not decoded yet
    try:
        image.load()
    except OSError as error:  # truncated data behind an already-opened PIL image
        raise ValueError(f"{where}: cannot read image ({error})") from error
    return _to_rgb(image, where)


def _flatten(images) -> list:
    """Nested lists (one per sample) of PIL images, paths, bytes or arrays -> one flat list in order."""
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flatten(item)]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images]


class AllavaProcessor(LlavaProcessor):
    r"""LlavaProcessor with ALLaVA defaults: pad-to-square with the CLIP mean colour, CLS-aware token count, ALLaVA's
    chat templates (literal `<image>` in message text cannot add placeholders), images made RGB with clear errors.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        patch_size: int = 14,
        vision_feature_select_strategy: str = "default",
        chat_template: str | None = None,
        image_token: str = IMAGE_TOKEN,
        num_additional_image_tokens: int = 1,
        **kwargs,
    ):
        if tokenizer is not None and image_token not in tokenizer.get_vocab():
            raise ValueError(
                f"The tokenizer has no {image_token!r} token; load it with load_tokenizer_with_image_token()."
            )
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=patch_size,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            num_additional_image_tokens=num_additional_image_tokens,
            **kwargs,
        )

    @classmethod
    def from_config(cls, config: AllavaConfig, tokenizer, chat_template: str | None = None) -> "AllavaProcessor":
        """The processor that feeds a model with this config: its image size, patch grid, CLS handling and
        `image_aspect_ratio` (pad to square or not); the chat template defaults to the text backbone's."""
        vision = config.vision_config
        return cls(
            image_processor=build_image_processor(vision.image_size, config.image_aspect_ratio, vision.model_type),
            tokenizer=tokenizer,
            patch_size=vision.patch_size,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            num_additional_image_tokens=int(has_cls_token(vision.model_type)),
            chat_template=chat_template or CHAT_TEMPLATES[backbone_template(config.text_config.model_type, tokenizer)],
        )

    @classmethod
    def from_backbones(
        cls,
        vision: str,
        text: str,
        chat_template: str | None = None,
        image_aspect_ratio: str = "pad",
        **tokenizer_kwargs,
    ) -> "AllavaProcessor":
        """Build the processor for a model composed with `AllavaForConditionalGeneration.from_backbones` (pass the
        same `image_aspect_ratio` to both)."""
        vision_config = AutoConfig.from_pretrained(vision)
        vision_config = getattr(vision_config, "vision_config", vision_config)
        config = AllavaConfig(
            vision_config=vision_config,
            text_config=AutoConfig.from_pretrained(text),
            image_aspect_ratio=image_aspect_ratio,
        )
        return cls.from_config(config, load_tokenizer_with_image_token(text, **tokenizer_kwargs), chat_template)

    @property
    def image_seq_length(self) -> int:
        """How many image tokens one image becomes (pad-to-square and centre crop make it the same for every image)."""
        crop = self.image_processor.crop_size
        return self._image_tokens(crop["height"], crop["width"])

    def _image_tokens(self, height: int, width: int) -> int:
        return image_seq_length(
            height, width, self.patch_size, self.num_additional_image_tokens, self.vision_feature_select_strategy
        )

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        """The placeholders of one preprocessed image, counted by the same rule as the config's."""
        height, width = get_image_size(to_numpy_array(image_inputs["pixel_values"][image_idx]))
        return self.image_token * self._image_tokens(height, width)

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs) -> MultiModalData:
        """Image tokens per image for serving engines: every image is cropped to the same size."""
        if image_sizes is None:
            return MultiModalData()
        crop = self._merge_kwargs(**kwargs)["images_kwargs"].get("crop_size") or self.image_processor.crop_size
        tokens = self._image_tokens(crop["height"], crop["width"])
        return MultiModalData(num_image_tokens=[tokens] * len(image_sizes), num_image_patches=[1] * len(image_sizes))

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if images is not None:
            images = [load_image(image, where=f"images[{index}]") for index, image in enumerate(_flatten(images))]
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        """transformers' method, except that `tokenize=True` tokenises with `encode_chats`, the function the training
        collator uses, so a prompt's ids are exactly the prefix of its training row's ids."""
        if not kwargs.get("tokenize", False):
            return super().apply_chat_template(conversation, chat_template, **kwargs)
        return self._tokenize_chats(conversation, chat_template, **kwargs)

    def _tokenize_chats(
        self,
        conversation,
        chat_template: str | None,
        tokenize: bool = True,
        return_dict: bool = False,
        return_tensors="auto",
        return_assistant_tokens_mask: bool = False,
        processor_kwargs: dict | None = None,
        **template_kwargs,
    ):
        processor_kwargs = dict(processor_kwargs or {})
        for key in _TOKENIZER_KWARGS & template_kwargs.keys():  # the legacy place for them, as transformers accepts
            processor_kwargs[key] = template_kwargs.pop(key)
        unsupported = processor_kwargs.keys() - _TOKENIZER_KWARGS - {"images"}
        if unsupported or processor_kwargs.pop("truncation", False):
            raise ValueError(
                f"apply_chat_template(tokenize=True) does not take {sorted(unsupported) or 'truncation'} (a "
                "truncated prompt could cut an image's tokens); it takes images, padding, max_length, "
                "pad_to_multiple_of and padding_side."
            )
        if template_kwargs.get("add_generation_prompt") and template_kwargs.get("continue_final_message"):
            raise ValueError("add_generation_prompt and continue_final_message cannot both be set.")
        conversations, batched = self._normalize_conversations(conversation)
        images = processor_kwargs.pop("images", None)
        if images is None:
            images = [_image_parts(messages) for messages in conversations]
        elif not batched:
            images = [images]
        per_image = self.image_seq_length
        template = self._resolve_chat_template(chat_template)
        rows = encode_chats(self.tokenizer, template, conversations, self.image_token_id, per_image, **template_kwargs)
        for index, ((ids, _), given) in enumerate(zip(rows, images)):
            wrote, expected = ids.count(self.image_token_id) // per_image, 0 if given is None else len(_flatten(given))
            if wrote != expected:
                raise ValueError(
                    f"conversation {index}: the chat template wrote {wrote} image placeholder(s) for {expected} "
                    "image(s); give exactly one {'type': 'image'} part per image"
                )
        padded = self.tokenizer.pad(
            {"input_ids": [ids for ids, _ in rows]}, padding=processor_kwargs.pop("padding", False), **processor_kwargs
        )
        data = {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}
        if return_assistant_tokens_mask:
            left = processor_kwargs.get("padding_side", self.tokenizer.padding_side) == "left"
            data["assistant_masks"] = [
                [0] * (len(ids) - len(mask)) + mask if left else mask + [0] * (len(ids) - len(mask))
                for ids, (_, mask) in zip(data["input_ids"], rows)
            ]
        flat = [load_image(image, where=f"images[{index}]") for index, image in enumerate(_flatten(images))]
        if flat:
            data["pixel_values"] = self.image_processor(flat)["pixel_values"]
        out = BatchFeature(data, tensor_type=None if return_tensors == "auto" else return_tensors)
        return out if return_dict else out["input_ids"]


def build_image_processor(
    image_size: int = 336, image_aspect_ratio: str = "pad", vision_model_type: str = "clip_vision_model"
) -> LlavaImageProcessorPil:
    """LLaVA-1.5 preprocessing: `"pad"` pads to a square with the tower's mean colour first. Then, as the tower was
    trained: CLIP resizes the shortest edge, centre crops and CLIP-normalises; SigLIP resizes straight to the square
    (no crop, aspect ratio not kept unless padded) and normalises with mean = std = 0.5 (padding colour 127)."""
    if vision_model_type.startswith("siglip"):
        mean, std, size = IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, {"height": image_size, "width": image_size}
    else:
        mean, std, size = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, {"shortest_edge": image_size}
    return LlavaImageProcessorPil(
        do_pad=image_aspect_ratio == "pad",
        size=size,
        crop_size={"height": image_size, "width": image_size},
        image_mean=mean,
        image_std=std,
    )


_TOKENIZER_KWARGS = {"padding", "truncation", "max_length", "pad_to_multiple_of", "padding_side"}


def _image_parts(messages) -> list:
    """The images of a conversation's image parts, in order (transformers' keys: image, url, path, base64)."""
    found = []
    for message in messages:
        content = message.get("content")
        for part in [] if isinstance(content, str) else content or []:
            if part.get("type") == "image":
                found.extend(part[key] for key in ("image", "url", "path", "base64") if part.get(key) is not None)
    return found


def encode_chats(
    tokenizer, chat_template: str, conversations, image_token_id: int, tokens_per_image: int, **template_kwargs
) -> list[tuple[list[int], list[int]]]:
    """The one way chats become ids, shared by training rows (the recipes' collator) and prompts (the processor).

    The rendered text is cut at the template's `{% generation %}` spans and each prompt or answer piece is tokenised on
    its own, as ALLaVA's own code does turn by turn: tokenising the whole string would let a byte-level BPE merge the
    space after `[/INST]` into the answer's first token (`'ĠA'` instead of `'Ġ'`, `'A'`), so a history answer at
    inference would not match the same answer in training. Each `<image>` becomes `tokens_per_image` image tokens;
    the mask is 1 on assistant tokens (answer and end-of-turn token), 0 elsewhere. No special token is added.
    """
    texts, spans = render_jinja_template(
        conversations=conversations,
        chat_template=chat_template,
        return_assistant_tokens_mask=True,
        **{**tokenizer.special_tokens_map, **template_kwargs},
    )
    pieces, is_answer, owner = [], [], []
    for index, (text, row_spans) in enumerate(zip(texts, spans)):
        cursor = 0
        for start, end in [*row_spans, (len(text), len(text))]:
            start, end = min(start, len(text)), min(end, len(text))  # continue_final_message cuts the last answer
            for piece, answer in ((text[cursor:start], False), (text[start:end], True)):
                if piece:
                    pieces.append(piece)
                    is_answer.append(answer)
                    owner.append(index)
            cursor = max(cursor, end)
    rows: list[tuple[list[int], list[int]]] = [([], []) for _ in texts]
    for ids, answer, index in zip(_tokenize_pieces(tokenizer, pieces, owner), is_answer, owner):
        row_ids, row_mask = rows[index]
        for token in ids:
            count = tokens_per_image if token == image_token_id else 1
            row_ids.extend([token] * count)
            row_mask.extend([int(answer and token != image_token_id)] * count)
    return rows


def _tokenize_pieces(tokenizer, pieces: list[str], owner: list[int]) -> list[list[int]]:
    """Tokenise pieces in two batched calls; a piece that continues a conversation is encoded after a newline (then
    dropped) so SentencePiece tokenizers add no prefix space mid-sequence."""
    newline = tokenizer.encode("\n", add_special_tokens=False)
    continues = [index > 0 and owner[index - 1] == owner[index] for index in range(len(pieces))]
    firsts = [index for index, cont in enumerate(continues) if not cont]
    rests = [index for index, cont in enumerate(continues) if cont]
    result: list[list[int]] = [[] for _ in pieces]
    if firsts:
        encoded = tokenizer([pieces[i] for i in firsts], add_special_tokens=False)["input_ids"]
        for index, ids in zip(firsts, encoded):
            result[index] = ids
    if rests:
        encoded = tokenizer(["\n" + pieces[i] for i in rests], add_special_tokens=False)["input_ids"]
        for index, ids in zip(rests, encoded):
            if ids[: len(newline)] == newline:
                result[index] = ids[len(newline) :]
            else:  # the newline merged into the piece's first token: encode the piece alone instead
                result[index] = tokenizer.encode(pieces[index], add_special_tokens=False)
    return result


__all__ = [
    "AllavaProcessor",
    "ImageTooLargeError",
    "build_image_processor",
    "check_pixel_budget",
    "encode_chats",
    "load_image",
    "load_tokenizer_with_image_token",
    "max_image_pixels",
    "open_image",
]
