"""Getting an image ready for the teacher: fetch, check, downscale, encode — or say precisely why it was skipped.

A bad image must never crash a run of half a million: every failure becomes a `SkipImage` with a reason that ends up
counted in the summary. Images already small enough and in a format every API accepts are sent byte for byte
(no quality loss, metadata kept); others are downscaled to `max_side` and re-encoded (metadata dropped).
"""

from __future__ import annotations

import base64
import hashlib
import io
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError


SKIP_REASONS = ("missing", "unreachable", "unreadable", "truncated", "oversized", "duplicate")
PASS_THROUGH = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


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

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.mime]

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


def fetch_url(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET an image; network failures and HTTP errors are 'unreachable', too-large bodies 'oversized'."""
    request = urllib.request.Request(url, headers={"User-Agent": "allava-synthesis/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https checked by caller)
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SkipImage("unreachable", f"{url}: {getattr(error, 'reason', error)}") from None
    if len(data) > max_bytes:
        raise SkipImage("oversized", f"{url}: more than {max_bytes} bytes")
    return data


def prepare(raw: bytes, max_side: int, max_pixels: int, where: str = "image") -> PreparedImage:
    """Decode fully (to catch truncation), bound the size, downscale/re-encode only when needed."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > max_pixels:
                raise SkipImage("oversized", f"{where}: {width}x{height} pixels > {max_pixels}")
            image.load()
    except SkipImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SkipImage("oversized", f"{where}: {error}") from None
    except UnidentifiedImageError:
        raise SkipImage("unreadable", f"{where}: not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "truncated" if "truncat" in str(error).lower() else "unreadable"
        raise SkipImage(reason, f"{where}: {error}") from None
    if width == 0 or height == 0:
        raise SkipImage("unreadable", f"{where}: empty image")
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
