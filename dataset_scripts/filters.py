"""Quality filters applied while building the dataset, each counted and each with an off switch.

- near-duplicate images: a record whose image nearly duplicates one already kept (dHash within `hash_distance` bits
  of 256, default 4, and the same colours; dataset_scripts/near_duplicates.py) is dropped whole. Re-encodes and
  resizes of one picture fall inside; distinct pictures do not, solid-colour ones of different colours included.
- answer length: an instruct or text answer shorter than `min_answer_chars` or longer than `max_answer_chars`.
- language: a caption or answer whose letters are mostly (less than `min_script_share`, default 80%) not in the
  script of the requested language (Latin for en/fr/de/..., CJK for zh, kana + CJK for ja, Hangul for ko, Cyrillic
  for ru/uk, ...). A cheap script check (each letter's Unicode name), not language identification: it catches a
  reply in the wrong script, not French sent where English was asked for.
- answer already in the caption: an instruct answer that appears verbatim (ignoring case and spacing) in the record's
  caption teaches nothing the caption row does not; the instruct row is dropped, the caption row kept.

Records that fail keep their other rows where the failure concerns one row only (a caption in the wrong script drops
the caption row). `counts` says how many rows each filter dropped.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass

from dataset_scripts.near_duplicates import HASH_BYTES, NearDuplicateIndex


SCRIPTS = {
    **dict.fromkeys(("en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "tr", "vi", "id"), ("LATIN",)),
    "zh": ("CJK",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA"),
    "ko": ("HANGUL", "CJK"),
    **dict.fromkeys(("ru", "uk", "bg"), ("CYRILLIC",)),
    "ar": ("ARABIC",),
    "el": ("GREEK",),
    "he": ("HEBREW",),
    "hi": ("DEVANAGARI",),
    "th": ("THAI",),
}


@dataclass(frozen=True)
class FilterOptions:
    dedup_images: bool = True
    hash_distance: int = 4
    length: bool = True
    min_answer_chars: int = 10
    max_answer_chars: int = 10_000
    language: str | None = "en"  # None: no language filter
    min_script_share: float = 0.8
    answer_in_caption: bool = True

    def __post_init__(self) -> None:
        if self.language is not None and self.language not in SCRIPTS:
            raise ValueError(f"--language {self.language!r}: choose one of {', '.join(sorted(SCRIPTS))}")
        if not 0 <= self.hash_distance < HASH_BYTES:  # one hash byte at least per band
            raise ValueError("--image-hash-distance must be between 0 and 31")


def script_share(text: str, scripts: tuple[str, ...]) -> float | None:
    """Share of the letters of `text` whose Unicode name starts with one of `scripts`; None without letters."""
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return None
    inside = sum(unicodedata.name(char, "").startswith(scripts) for char in letters)
    return inside / len(letters)


def wrong_script(text: str | None, language: str, min_share: float = 0.8) -> bool:
    """Whether fewer than `min_share` of the letters of `text` are in the script of `language` (one of SCRIPTS);
    text without letters passes. The language filter of build_dataset, also used by the ALLaVA-4V import."""
    if not text:
        return False
    share = script_share(text, SCRIPTS[language])
    return share is not None and share < min_share


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


class QualityFilters:
    def __init__(self, options: FilterOptions) -> None:
        self.options = options
        self.index = NearDuplicateIndex(options.hash_distance)
        self.counts: Counter = Counter()

    def _wrong_language(self, text: str | None) -> bool:
        language = self.options.language
        return language is not None and wrong_script(text, language, self.options.min_script_share)

    def _row_problem(self, kind: str, record: dict) -> str | None:
        options = self.options
        if kind == "caption":
            return "wrong_language" if self._wrong_language(record.get("description")) else None
        answer = record.get("answer") or ""
        if options.length and len(answer) < options.min_answer_chars:
            return "answer_too_short"
        if options.length and len(answer) > options.max_answer_chars:
            return "answer_too_long"
        if self._wrong_language(answer):
            return "wrong_language"
        caption = record.get("description")
        if options.answer_in_caption and kind == "instruct" and caption and _normal(answer) in _normal(caption):
            return "answer_in_caption"
        return None

    def keep(self, record: dict, image_bytes: bytes | None, rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        """The rows of one record that pass; what is dropped is counted by reason (one count per row)."""
        key = str(record.get("key"))
        if self.options.dedup_images and image_bytes is not None:
            if self.index.first_copy_of(image_bytes, key, f"record {key}") is not None:
                self.counts["near_duplicate_image"] += len(rows)
                return []
        kept = []
        for subset, row in rows:
            problem = self._row_problem(subset.split("_", 1)[0], record)
            if problem is None:
                kept.append((subset, row))
            else:
                self.counts[problem] += 1
        return kept

    def report(self) -> dict:
        """Settings and counts, for stats.json and the card."""
        return {"settings": asdict(self.options), "dropped_rows": dict(sorted(self.counts.items()))}


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quality filters (see dataset_scripts/filters.py)")
    group.add_argument("--no-dedup-images", action="store_true", help="keep near-duplicate images")
    group.add_argument(
        "--image-hash-distance", type=int, default=4, help="near-duplicates: dHash bits (of 256) apart (default: 4)"
    )
    group.add_argument("--no-length-filter", action="store_true", help="keep answers of any length")
    group.add_argument("--min-answer-chars", type=int, default=10, help="(default: 10)")
    group.add_argument("--max-answer-chars", type=int, default=10_000, help="(default: 10000)")
    group.add_argument("--language", default="en", help="language the replies were requested in (default: en)")
    group.add_argument("--no-language-filter", action="store_true", help="keep replies in any script")
    group.add_argument(
        "--no-answer-in-caption-filter", action="store_true", help="keep answers that the caption contains verbatim"
    )


def options_from_args(args: argparse.Namespace) -> FilterOptions:
    return FilterOptions(
        dedup_images=not args.no_dedup_images,
        hash_distance=args.image_hash_distance,
        length=not args.no_length_filter,
        min_answer_chars=args.min_answer_chars,
        max_answer_chars=args.max_answer_chars,
        language=None if args.no_language_filter else args.language,
        answer_in_caption=not args.no_answer_in_caption_filter,
    )
