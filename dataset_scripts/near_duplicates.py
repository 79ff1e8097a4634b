"""Is this image a near-duplicate of one seen before, and of which? One index for build_dataset's filter and for
callers that want to ask before paying for a picture twice (`NearDuplicateIndex.first_copy_of`).

An image's signature has two parts, and two images are near-duplicates only when both agree:

- shape: a difference hash (dHash) of the image as 17x16 grey pixels, 256 bits, one per horizontally adjacent pair
  (left brighter than right); within `distance` bits (Hamming). Re-encodes and resizes of one picture measure about
  1 bit (a 112-px PNG saved as a 100-px JPEG at quality 70), distinct shapes-world scenes 6 or more.
- colour: the image as 4x4 RGB pixels (box-averaged); the mean absolute difference of the 48 values at most
  `COLOUR_TOLERANCE` (of 255). dHash sees only brightness steps, so every solid-colour or flat image hashes to the
  same value (no pair is brighter), whatever its colour; the colour check keeps a red and a blue square apart. A
  re-encode barely moves these averages (measured over 24 shapes-world scenes: at most 0.4 for the JPEG above, 1.2
  for a 60-px JPEG at quality 40), while distinct scenes on one background already differ by 2.3 or more.

Candidates are found by splitting the hash into `distance` + 1 bands: two hashes that close agree exactly on at least
one band (pigeonhole), so no pairwise scan is needed. Each band takes bytes from the whole image (every
(`distance` + 1)-th byte), not a strip of rows: a plain area hashes to 0 bits, and strips would put every image that
shares a plain background into one bucket (measured on 20,000 shapes-world scenes: 1,342 signatures compared a
lookup with strips, 12 with spread bands, the same images kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from modeling_allava.processing_allava import open_image


HASH_SIZE = 16
COLOUR_SIZE = 4
COLOUR_TOLERANCE = 12
HASH_BYTES = HASH_SIZE * HASH_SIZE // 8


@dataclass(frozen=True, slots=True)
class Signature:
    hash: int  # 256-bit dHash
    colour: bytes  # 4x4 RGB pixels, 48 bytes


def dhash(image: Image.Image) -> int:
    """256-bit difference hash of an image (see the module notes)."""
    grey = image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = grey.tobytes()
    bits = 0
    for row in range(HASH_SIZE):
        start = row * (HASH_SIZE + 1)
        for column in range(HASH_SIZE):
            bits = bits << 1 | (pixels[start + column] > pixels[start + column + 1])
    return bits


def signature(image_bytes: bytes, where: str = "image") -> Signature:
    """The hash and colour signature of encoded image bytes (decoded within the pixel budget)."""
    with open_image(image_bytes, where) as image:
        colour = image.convert("RGB").resize((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.BOX).tobytes()
        return Signature(dhash(image), colour)


def colour_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two colour signatures, 0-255."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


class NearDuplicateIndex:
    """Signatures seen so far with the id of each, banded so that a lookup only compares hashes that share a band.

    It holds every kept image of a run (ALLaVA: ~700,000), so it stores rows, not objects: each image's hash,
    colours and id go into flat lists, and one dict for all bands maps a band's key to a row number (a list only
    where rows share a bucket). Holding a `Signature` and a list per band took 1.34 KB an image."""

    def __init__(self, distance: int, colour_tolerance: float = COLOUR_TOLERANCE) -> None:
        self.distance = distance
        self.colour_tolerance = colour_tolerance
        self.bands = distance + 1
        self.hashes: list[int] = []
        self.colours: list[bytes] = []
        self.ids: list[str] = []
        self.buckets: dict[int, int | list[int]] = {}

    def _keys(self, value: int) -> list[int]:
        """Band i holds every (distance+1)-th byte of the hash from byte i: half-rows from top to bottom of the
        image, so that a plain area (whose bits are all 0) fills no band alone and flat-backed images do not crowd
        one bucket. Any split of the bits keeps the pigeonhole. A key is the band's bytes and the band's number."""
        packed = value.to_bytes(HASH_BYTES, "big")
        return [int.from_bytes(packed[band :: self.bands], "big") * self.bands + band for band in range(self.bands)]

    def bucket(self, key: int) -> list[int]:
        """The rows whose band has this key, in the order they were added."""
        rows = self.buckets.get(key, [])
        return [rows] if isinstance(rows, int) else rows

    def match(self, sig: Signature) -> str | None:
        """The id of a near-duplicate added before, or None."""
        for key in self._keys(sig.hash):
            for row in self.bucket(key):
                if (sig.hash ^ self.hashes[row]).bit_count() <= self.distance and (
                    colour_distance(sig.colour, self.colours[row]) <= self.colour_tolerance
                ):
                    return self.ids[row]
        return None

    def add(self, sig: Signature, item_id: str) -> None:
        row = len(self.ids)
        self.hashes.append(sig.hash)
        self.colours.append(sig.colour)
        self.ids.append(item_id)
        for key in self._keys(sig.hash):
            rows = self.buckets.setdefault(key, row)
            if isinstance(rows, list):
                rows.append(row)
            elif rows != row:
                self.buckets[key] = [rows, row]

    def first_copy(self, sig: Signature, item_id: str) -> str | None:
        """The id of the first copy if `sig` nearly duplicates an image added before; otherwise None, and this
        image is added under `item_id`."""
        first = self.match(sig)
        if first is None:
            self.add(sig, item_id)
        return first

    def first_copy_of(self, image_bytes: bytes, item_id: str, where: str = "image") -> str | None:
        """`first_copy` for encoded image bytes: the one call to make before paying for a picture."""
        return self.first_copy(signature(image_bytes, where), item_id)
