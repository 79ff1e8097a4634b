"""ALLaVA processor: LLaVA-1.5 image preprocessing, exact image-token count, ALLaVA's chat formats, safe images."""

import io
import os
import warnings

import numpy as np
from PIL import Image
from transformers import AutoConfig, AutoTokenizer, LlavaProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil


# Jinja fragments shared by the templates. Content given as a list of parts (the transformers convention) gets one
# `<image>\n` per image part, and `<image>` typed inside its text parts is written `< image>`, so user text can never
# add image slots. Content given as a plain string is the llava-hf convention: it is used as is, `<image>` included.
_PARTS = (
    "{%- if message['content'] is string -%}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] -%}{%- set escape = false -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- set escape = true -%}{%- endif -%}"
)
_TEXT = "((part['text'] | replace('<image>', '< image>')) if escape else part['text'])"
_TEXT_PARTS = "{%- for part in parts if part['type'] == 'text' -%}{{- " + _TEXT + " -}}{%- endfor -%}"
_IMAGE_PARTS = "{%- for part in parts if part['type'] == 'image' -%}{{- '<image>\n' -}}{%- endfor -%}"

# ALLaVA-Phi2 / ALLaVA-StableLM2: no system prompt, no BOS; `[INST] <image>\n{user} [/INST] {assistant}<eos>`.
# A system message, if given, starts the first user turn. Generation markers make TRL's `assistant_only_loss`
# (and our collator) train on the assistant text and its end-of-turn token only.
ALLAVA_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}" + _PARTS + "{%- if message['role'] == 'system' -%}"
    "{%- for part in parts if part['type'] == 'text' -%}{%- set ns.system = ns.system + " + _TEXT + " + '\n\n' -%}"
    "{%- endfor -%}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '[INST] ' + ns.system -}}{%- set ns.system = '' -%}" + _IMAGE_PARTS + _TEXT_PARTS + "{{- ' [/INST] ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- generation -%}" + _TEXT_PARTS + "{{- eos_token -}}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# ALLaVA-Phi3-mini: the backbone's own format, `<|user|>\n<image>\n{user}<|end|>\n<|assistant|>\n{assistant}<|end|>\n`.
PHI3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}" + _PARTS + "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>\n' -}}"
    "{%- generation -%}" + _TEXT_PARTS + "{{- '<|end|>' -}}{%- endgeneration -%}"
    "{{- '\n' -}}"
    "{%- else -%}"
    "{{- '<|' + message['role'] + '|>\n' -}}" + _IMAGE_PARTS + _TEXT_PARTS + "{{- '<|end|>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
)

CHAT_TEMPLATES = {"allava": ALLAVA_CHAT_TEMPLATE, "phi3": PHI3_CHAT_TEMPLATE}
# Which template each text backbone uses (ALLaVA's own choice for phi / stablelm / phi3; [INST] for the others).
TEMPLATE_FOR_TEXT_TYPE = {"phi": "allava", "stablelm": "allava", "phi3": "phi3", "llama": "allava", "qwen2": "allava"}

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


def open_image(source, where: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Open a path or bytes, check the pixel budget from the header, then decode fully (truncation shows here).

    The one image-safety check: every reader of untrusted images goes through it. Returns the decoded image in its
    own mode (with `format` set); raises ImageTooLargeError, or ValueError naming `where` for anything unreadable.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own budget decides, below
            image = Image.open(source)
        check_pixel_budget(image, where, max_pixels)
        image.load()
    except Image.DecompressionBombError as error:  # beyond twice Pillow's limit: refused inside Image.open
        raise ImageTooLargeError(f"{where}: {error}") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise ValueError(f"{where}: cannot read image ({error})") from None
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{where}: image has zero size ({image.width}x{image.height}).")
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
    def from_backbones(cls, vision: str, text: str, chat_template: str | None = None, **tokenizer_kwargs):
        """Build the processor for a model composed with `AllavaForConditionalGeneration.from_backbones`."""
        vision_config = AutoConfig.from_pretrained(vision)
        vision_config = getattr(vision_config, "vision_config", vision_config)
        text_type = AutoConfig.from_pretrained(text).model_type
        has_cls = vision_config.model_type == "clip_vision_model"
        return cls(
            image_processor=build_image_processor(vision_config.image_size),
            tokenizer=load_tokenizer_with_image_token(text, **tokenizer_kwargs),
            patch_size=vision_config.patch_size,
            vision_feature_select_strategy="default" if has_cls else "full",
            num_additional_image_tokens=int(has_cls),
            chat_template=chat_template or CHAT_TEMPLATES[TEMPLATE_FOR_TEXT_TYPE.get(text_type, "allava")],
        )

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if images is not None:
            images = [load_image(image, where=f"images[{index}]") for index, image in enumerate(_flatten(images))]
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)


def build_image_processor(image_size: int = 336) -> LlavaImageProcessorPil:
    """LLaVA-1.5 preprocessing: pad to square (CLIP mean colour), resize shortest edge, centre crop, CLIP normalise."""
    return LlavaImageProcessorPil(
        do_pad=True,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )


__all__ = [
    "AllavaProcessor",
    "ImageTooLargeError",
    "build_image_processor",
    "check_pixel_budget",
    "load_image",
    "load_tokenizer_with_image_token",
    "max_image_pixels",
    "open_image",
]
