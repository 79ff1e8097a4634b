import io
import random

import numpy as np
import pytest
from PIL import Image, ImageFile

from dataset_scripts.images import SKIP_REASONS, SkipImage, prepare
from recipes.tiny import shapes_world as world


def png(size=(64, 48), colour=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(size=(640, 480)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def with_flipped_byte(raw: bytes, offset: int) -> bytes:
    data = bytearray(raw)
    data[offset] ^= 0xFF
    return bytes(data)


def test_small_supported_images_pass_through_byte_for_byte():
    raw = world.png_bytes(world.random_scene(random.Random(0)))
    prepared = prepare(raw, max_side=768, max_pixels=10**6)
    assert prepared.data == raw and prepared.mime == "image/png" and (prepared.width, prepared.height) == (112, 112)
    assert prepared.data_url().startswith("data:image/png;base64,")
    photo = jpeg()
    prepared = prepare(photo, max_side=768, max_pixels=10**6)
    assert prepared.data == photo and prepared.mime == "image/jpeg" and (prepared.width, prepared.height) == (640, 480)


def test_large_images_are_downscaled_and_other_formats_reencoded():
    prepared = prepare(png((2000, 1000)), max_side=500, max_pixels=10**8)
    assert (prepared.width, prepared.height) == (500, 250)
    assert Image.open(io.BytesIO(prepared.data)).size == (500, 250)
    buffer = io.BytesIO()
    Image.new("RGB", (30, 30)).save(buffer, format="BMP")
    bmp = prepare(buffer.getvalue(), max_side=768, max_pixels=10**6)
    assert bmp.mime == "image/jpeg" and bmp.source_sha256 != prepare(png(), 768, 10**6).source_sha256


PNG_300 = png((300, 300))
JPEG_640 = jpeg()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"definitely not an image", "unreadable"),
        (PNG_300[:400], "truncated"),
        (PNG_300[:-12], "truncated"),  # every pixel there, the closing IEND chunk cut off
        (with_flipped_byte(PNG_300, PNG_300.index(b"IDAT") + 8), "unreadable"),  # the chunk's CRC no longer matches
        (JPEG_640[: len(JPEG_640) * 2 // 3], "truncated"),
        (png((3000, 3000)), "oversized"),
    ],
)
def test_bad_images_are_skipped_with_a_reason(raw, reason):
    with pytest.raises(SkipImage) as error:
        prepare(raw, max_side=768, max_pixels=1_000_000, where="x.png")
    assert error.value.reason == reason and reason in SKIP_REASONS and "x.png" in str(error.value)


def test_images_sent_as_they_are_are_proven_whole_without_a_full_decode(monkeypatch):
    decoded_sizes = []
    load = ImageFile.ImageFile.load

    def recording_load(image):
        decoded_sizes.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    prepare(PNG_300, max_side=768, max_pixels=10**6)
    assert decoded_sizes == []  # chunk CRCs and IEND checked, nothing inflated
    prepare(JPEG_640, max_side=768, max_pixels=10**6)
    assert decoded_sizes == [(80, 60)]  # every block read, at 1/8 scale
    prepare(png((2000, 1000)), max_side=500, max_pixels=10**8)
    assert set(decoded_sizes[1:]) == {(2000, 1000)}  # re-encoded images are decoded in full
