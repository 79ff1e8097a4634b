"""Which version of the published ALLaVA-4V annotation files an import reads, told from facts the release publishes.

The release (FreedomIntelligence/ALLaVA-4V on the Hub) replaced its LAION files after captions and questions were
found attached to the wrong images, and its README's subset table changed with it. No list of ids per version is
published, so a file is recognised by its row count against the counts that table has given
(`VERSIONS`). Two id facts are checked as well: the LAION caption and instruct files describe the same images (the
README says they share one image set), so their ids' numbers must agree, and a digest of each file's sorted ids is
recorded so that two imports can be compared even when the count is not one the README ever gave.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Version:
    name: str
    superseded: bool
    evidence: str


_FIRST = "the first release files"
_FIRST_EVIDENCE = "README subset table until revision 41db369 (2024-05-15)"
_REISSUE = "the re-issue of 2024-04-28"
_REISSUE_EVIDENCE = "README subset table from revision 41db369 (2024-05-15)"
_LAION = ("caption_laion", "instruct_laion")
_LATEST_EVIDENCE = "README subset table from revision 8a6e9bc (2024-05-15, 'update the number of samples in LAION')"

# (subset, rows in the file) -> version
VERSIONS: dict[tuple[str, int], Version] = {
    **{
        (subset, 512_843): Version("a pre-release LAION file", True, "README subset table of 2024-02-23")
        for subset in _LAION
    },
    **{(subset, 505_588): Version(_FIRST, True, _FIRST_EVIDENCE) for subset in _LAION},
    **{(subset, 489_044): Version(_REISSUE, False, _REISSUE_EVIDENCE) for subset in _LAION},
    **{(subset, 468_670): Version(f"{_REISSUE}, as last counted", False, _LATEST_EVIDENCE) for subset in _LAION},
    ("caption_vflan", 202_552): Version(_FIRST, True, _FIRST_EVIDENCE),
    ("instruct_vflan", 203_065): Version(_FIRST, True, _FIRST_EVIDENCE),
    ("caption_vflan", 194_977): Version("the current files", False, _REISSUE_EVIDENCE),
    ("instruct_vflan", 194_254): Version("the current files", False, _REISSUE_EVIDENCE),
    ("text", 143_000): Version("the current files", False, "README subset table (143,000 rows throughout)"),
}
CURRENT_LAION_ROWS = 489_044
_NUMBER = re.compile(r"_(\d+)$")


def identify(subset: str, rows: int) -> Version | None:
    """The version a release file of `subset` with `rows` rows belongs to; None for a count the README never gave
    (a partial download, a translated file, or a version published after these facts were gathered)."""
    return VERSIONS.get((subset.removesuffix("_zh"), rows))


def ids_digest(ids: list[str]) -> str:
    """First 16 hex digits of the SHA-256 of the sorted ids, one per line: equal digests, equal id sets."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:16]


def image_numbers(ids: list[str]) -> set[str]:
    """The LAION image numbers in ids like allava_laion_cap_100277305 / allava_laion_inst_100277305."""
    return {match.group(1) for match in map(_NUMBER.search, ids) if match}


def describe(path: str, subset: str, rows: int, version: Version | None) -> dict:
    """The stats.json entry for one release file."""
    return {
        "subset": subset,
        "rows": rows,
        "version": version.name if version else "unknown (a row count the release README never gave)",
        "superseded": bool(version and version.superseded),
        "evidence": version.evidence if version else None,
        "file": path,
    }


def warning_for(path: str, rows: int, version: Version) -> str:
    return (
        f"{path} has {rows:,} rows: {version.name} ({version.evidence}), superseded. The LAION files were re-issued "
        f"on 2024-04-28 ({CURRENT_LAION_ROWS:,} rows) after captions were found attached to the wrong images; "
        "download the current annotation files"
    )


def laion_pairing_warning(caption_ids: list[str], instruct_ids: list[str]) -> str | None:
    """A warning when the LAION caption and instruct files do not describe the same images (files of two versions)."""
    caption, instruct = image_numbers(caption_ids), image_numbers(instruct_ids)
    if not caption or not instruct or caption == instruct:
        return None
    return (
        f"the LAION caption and instruct files describe different images ({len(caption - instruct):,} only in the "
        f"caption file, {len(instruct - caption):,} only in the instruct file); one release shares one image set "
        "between them, so these files likely come from different versions"
    )
