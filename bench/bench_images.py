"""CPU per image of the synthesis image check: a full decode (the baseline) against `prepare` as the CLI runs it.

    python bench/bench_images.py [--rounds 5] [--repeats 200] [--kinds scene-png-112 ...]

Every image here is small enough to be sent byte for byte, which is how most inputs go (default --max-side 768):
the baseline is what checking such an image costs with a full decode (`open_image`, plus the SHA-256 prepare
takes); `prepare` proves a PNG whole from its chunk CRCs and IEND and decodes a JPEG at 1/8 scale. Kinds: the
synthesis bench's 112 px scenes, and 640x480 PNG and JPEG (q90) of a photo-like picture (smooth gradients under mild
noise) and of pure noise (the worst case for a JPEG decoder: every coefficient coded). Each measurement runs in its
own process; rounds alternate baseline and prepare, so drift hits both alike. Prints a markdown table of the median
process-CPU ms per image and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from dataset_scripts.images import prepare
from modeling_allava.processing_allava import open_image
from recipes.tiny import shapes_world


KINDS = ("scene-png-112", "photo-png-640", "photo-jpeg-640", "noise-jpeg-640")
MAX_PIXELS = 10**8


def image_bytes(kind: str) -> bytes:
    """The same bytes for a kind in every process."""
    if kind == "scene-png-112":
        return shapes_world.png_bytes(shapes_world.random_scene(random.Random(0)))
    rng = np.random.default_rng(0)
    if kind.startswith("noise"):
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        x, y = np.meshgrid(np.linspace(0, 1, 640), np.linspace(0, 1, 480))
        smooth = np.stack([x, y, x * y], axis=2) * 255 + rng.normal(0, 8, (480, 640, 3))
        pixels = smooth.clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if "png" in kind else "JPEG", quality=90)
    return buffer.getvalue()


def full_decode(raw: bytes) -> None:
    hashlib.sha256(raw).hexdigest()
    open_image(raw, "bench", MAX_PIXELS)


def prepare_for_sending(raw: bytes) -> None:
    prepared = prepare(raw, max_side=768, max_pixels=MAX_PIXELS, where="bench")
    assert prepared.data is raw  # sent byte for byte: the path this bench is about


VARIANTS = {"full decode": full_decode, "prepare": prepare_for_sending}


def measure(variant: str, kind: str, repeats: int) -> float:
    """Process-CPU ms per image, after a warm-up."""
    check, raw = VARIANTS[variant], image_bytes(kind)
    for _ in range(10):
        check(raw)
    start = time.process_time()
    for _ in range(repeats):
        check(raw)
    return (time.process_time() - start) * 1000 / repeats


def in_own_process(variant: str, kind: str, repeats: int) -> float:
    command = [sys.executable, __file__, "--measure", variant, kind, "--repeats", str(repeats)]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes per variant and kind, interleaved")
    parser.add_argument("--repeats", type=int, default=200, help="checks of the image per process")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--measure", nargs=2, metavar=("VARIANT", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(measure(*args.measure, args.repeats))
        return
    print("| image | bytes | full decode ms | prepare ms | prepare / full decode |")
    print("|---|---:|---:|---:|---:|")
    for kind in args.kinds:
        times = {variant: [] for variant in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                times[variant].append(in_own_process(variant, kind, args.repeats))
        full, ours = (statistics.median(times[variant]) for variant in VARIANTS)
        print(f"| {kind} | {len(image_bytes(kind))} | {full:.3f} | {ours:.3f} | {ours / full:.2f} |", flush=True)


if __name__ == "__main__":
    main()
