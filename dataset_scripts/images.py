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
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from modeling_allava.processing_allava import ImageTooLargeError, open_image


SKIP_REASONS = ("missing", "unreachable", "refused", "unreadable", "truncated", "oversized", "duplicate")
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

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def read_file(path: str | Path, max_bytes: int) -> bytes:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise SkipImage("missing", f"{path}: {error.strerror or error}") from None
    if size > max_bytes:
        raise SkipImage("oversized", f"{path}: {size} bytes > {max_bytes}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise SkipImage("unreadable", f"{path}: {error.strerror or error}") from None


def prepare(raw: bytes, max_side: int, max_pixels: int, where: str = "image") -> PreparedImage:
    """Check the pixel budget, decode fully (to catch truncation), downscale/re-encode only when needed."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        image = open_image(raw, where, max_pixels)
    except ImageTooLargeError as error:
        raise SkipImage("oversized", str(error)) from None
    except ValueError as error:  # names `where`; zero-size images land here too
        raise SkipImage("truncated" if "truncat" in str(error).lower() else "unreadable", str(error)) from None
    width, height = image.size
    fmt = image.format or ""
    if fmt in PASS_THROUGH and max(width, height) <= max_side and not getattr(image, "is_animated", False):
        return PreparedImage(raw, PASS_THROUGH[fmt], width, height, digest)
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
