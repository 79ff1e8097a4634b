"""Getting an image ready for the teacher: read, check, downscale, encode — or say precisely why it was skipped.

A bad image must never crash a run of half a million: every failure becomes a `SkipImage` with a reason that ends up
counted in the summary. Images already small enough and in a format every API accepts are sent byte for byte
(no quality loss, metadata kept); others are downscaled to `max_side` and re-encoded (metadata dropped). URLs are
fetched by url_fetch.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from modeling_allava.processing_allava import ImageTooLargeError, open_image


# near_duplicate: another file of a picture already paid for (first_copies.py), decided before any request
SKIP_REASONS = (
    "missing",
    "unreachable",
    "refused",
    "unreadable",
    "truncated",
    "oversized",
    "duplicate",
    "near_duplicate",
)
PASS_THROUGH = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class SkipImage(Exception):
    """This image is left out of the run; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PreparedImage:
    data: bytes  # what is sent and stored
    mime: str
    width: int
    height: int
    source_sha256: str  # of the original bytes: identical files share it, whatever their names
    signature: str | None = None  # near-duplicate signature of `data` (first_copies.py), when the run dedups

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def read_file(path: str | Path, max_bytes: int) -> bytes:
    """A file's bytes, refused as a skip when missing, oversized or unreadable. Read through `os` with the path as
    given: making a `Path` of it would intern its name, and a run reads ~1M names (the table of interned strings keeps
    its size once grown: ~150 B an input)."""
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise SkipImage("missing", f"{path}: {error.strerror or error}") from None
    if size > max_bytes:
        raise SkipImage("oversized", f"{path}: {size} bytes > {max_bytes}")
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise SkipImage("unreadable", f"{path}: {error.strerror or error}") from None


def prove_whole(image: Image.Image) -> None:
    """Show that a just-opened file sent byte for byte is complete and uncorrupted, for a fraction of a full decode.

    A PNG's every chunk carries a CRC and the file ends with IEND: checking them (Pillow's `verify`) catches a cut file
    and any corrupted byte without inflating the pixels. A JPEG is decoded at 1/8 scale: libjpeg still reads every
    entropy-coded block, so a cut file fails exactly as in a full decode, but most of the inverse DCT and colour work
    is skipped. Other formats decode fully. Cost against a full decode: bench/bench_images.py (a 640x480 PNG about
    0.1x, a JPEG 0.6-0.8x). Raises what Pillow raises; `open_image` names the file.
    """
    if image.format == "PNG":
        image.verify()
        return
    if image.format == "JPEG":
        image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _sent_as_is(image: Image.Image, max_side: int) -> bool:
    """Small enough, in a format every API accepts, and a still image: sent byte for byte."""
    return image.format in PASS_THROUGH and max(image.size) <= max_side and not getattr(image, "is_animated", False)


def prepare(raw: bytes, max_side: int, max_pixels: int, where: str = "image") -> PreparedImage:
    """Check the pixel budget, prove the file whole (truncation shows here), downscale/re-encode only when needed."""
    digest = hashlib.sha256(raw).hexdigest()

    header = {}

    def decode(image: Image.Image) -> None:  # a full decode only for images that are re-encoded
        header.update(size=image.size, as_is=_sent_as_is(image, max_side))  # a JPEG draft shrinks `size`
        (prove_whole if header["as_is"] else Image.Image.load)(image)

    try:
        image = open_image(raw, where, max_pixels, decode)
    except ImageTooLargeError as error:
        raise SkipImage("oversized", str(error)) from None
    except ValueError as error:  # names `where`; zero-size images land here too
        raise SkipImage("truncated" if "truncat" in str(error).lower() else "unreadable", str(error)) from None
    fmt = image.format or ""
    if header["as_is"]:
        return PreparedImage(raw, PASS_THROUGH[fmt], *header["size"], digest)
    image = ImageOps.exif_transpose(image)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    buffer = io.BytesIO()
    if has_alpha or fmt == "PNG":
        image.convert("RGBA" if has_alpha else "RGB").save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        mime = "image/jpeg"
    return PreparedImage(buffer.getvalue(), mime, image.width, image.height, digest)
