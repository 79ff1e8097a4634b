"""The original ALLaVA-4V release (JSON files + image folders) -> the same dataset format build_dataset.py writes.

    python dataset_scripts/import_allava4v.py --root ALLaVA-4V/ --output allava4v/
    python dataset_scripts/import_allava4v.py --root ALLaVA-4V/ --output allava4v/ \
        --file caption_laion=allava_laion/ALLaVA-Caption-LAION-4V.json --file text=allava_text/evol.json

Without --file, every *.json under --root whose name says which subset it is (Caption/Instruct + LAION/VFLAN, or
Evol-Instruct for text) is imported. Image paths in the JSON are relative to --root. Rows whose image is missing
(about a tenth of LAION URLs died before release; some downloads are partial), lies outside --root, does not decode
as an image within the pixel budget, or whose conversation is malformed are skipped and counted, never fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from dataset_scripts.dataset_writer import (
    DatasetFolderError,
    finish,
    prepare_output,
    push_to_hub,
    write_subsets,
)
from dataset_scripts.schema import KNOWN_SUBSETS, make_row
from hub.upload import require_token
from modeling_allava.processing_allava import ImageTooLargeError, open_image
from toolkit.cli import InputError, Parser, check_repo_id, run


PROMPT_VERSION = "allava-4v-release"
TEACHERS = {"laion": "gpt-4v", "vflan": "gpt-4v", "evol": "gpt-4-turbo"}


class ReleaseError(RuntimeError):
    """The release folder does not look as expected."""


def subset_of(filename: str) -> str | None:
    """Which subset a release file holds, from its name (e.g. ALLaVA-Instruct-VFLAN-4V.json -> instruct_vflan)."""
    name = filename.lower()
    if "evol" in name or "text" in name:
        return "text"
    kind = "caption" if "caption" in name else "instruct" if "instruct" in name else None
    source = "laion" if "laion" in name else "vflan" if "vflan" in name else None
    return f"{kind}_{source}" if kind and source else None


def discover(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.json")):
        subset = subset_of(path.name)
        if subset is not None:
            found.setdefault(subset, []).append(path)
    return found


class Importer:
    """Converts release rows one by one and counts what it leaves out."""

    def __init__(self, root: Path, files: dict[str, list[Path]], limit: int | None) -> None:
        self.root = root
        self.files = files
        self.limit = limit
        self.skipped: Counter = Counter()
        self.examples: list[str] = []

    def _skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(message)

    def rows(self) -> Iterator[tuple[str, dict]]:
        for subset, paths in self.files.items():
            written = 0
            for path in paths:
                try:
                    entries = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as error:
                    raise ReleaseError(f"{path}: cannot read the release JSON ({error})") from None
                if not isinstance(entries, list):
                    raise ReleaseError(f"{path}: expected a JSON list of rows")
                for number, entry in enumerate(entries):
                    if self.limit is not None and written >= self.limit:
                        break
                    row = self._convert(subset, entry, f"{path.name}[{number}]")
                    if row is not None:
                        written += 1
                        yield subset, row

    def _image_bytes(self, relative: str, where: str) -> bytes | None:
        """The bytes of an image the release JSON names, if it lies inside --root and decodes as an image within the
        pixel budget; otherwise the row is skipped and counted (the JSON must not pick files to upload)."""
        path = (self.root / relative).resolve()
        if Path(relative).is_absolute() or not path.is_relative_to(self.root.resolve()):
            self._skip("outside_root", f"{where}: {relative} is outside {self.root}")
            return None
        try:
            data = path.read_bytes()
        except OSError:
            self._skip("missing_image", f"{where}: {relative} not found under {self.root}")
            return None
        try:
            open_image(data, f"{where}: {relative}")
        except ImageTooLargeError as error:
            self._skip("oversized_image", str(error))
            return None
        except ValueError as error:
            self._skip("unreadable_image", str(error))
            return None
        return data

    def _convert(self, subset: str, entry: object, where: str) -> dict | None:
        if not isinstance(entry, dict):
            self._skip("malformed", f"{where}: expected an object, got {type(entry).__name__}")
            return None
        source = "evol" if subset == "text" else subset.split("_", 1)[1]
        row_id = str(entry.get("id") or f"allava_text_{entry.get('idx', where)}")
        image_bytes, origin = None, entry.get("url")
        if subset != "text":
            relative = entry.get("image")
            if not isinstance(relative, str):
                self._skip("no_image_field", f"{where}: no 'image' field")
                return None
            image_bytes = self._image_bytes(relative, where)
            if image_bytes is None:
                return None
            origin = origin or relative
        try:
            return make_row(
                row_id,
                entry.get("conversations"),
                image_bytes,
                source=source,
                teacher_model=TEACHERS[source],
                prompt_version=PROMPT_VERSION,
                prompt_hash=None,
                origin=origin,
                original_caption=entry.get("original_caption"),
                mode="text" if subset == "text" else "vflan" if source == "vflan" else "caption-qa",
            )
        except ValueError as error:
            self._skip("malformed", f"{where}: {error}")
            return None


def _parse_file(text: str) -> tuple[str, str]:
    subset, _, path = text.partition("=")
    if subset not in KNOWN_SUBSETS or not path:
        raise argparse.ArgumentTypeError(f"expected SUBSET=PATH with SUBSET in {KNOWN_SUBSETS}, got {text!r}")
    return subset, path


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(ReleaseError, DatasetFolderError))


def _main(argv: list[str] | None) -> int:
    parser = Parser(
        "Import the ALLaVA-4V release (JSON files + image folders) into this repo's dataset format.",
        "python dataset_scripts/import_allava4v.py --root ALLaVA-4V/ --output allava4v/",
    )
    parser.add_argument("--root", required=True, help="release folder (JSON files; image paths are relative to it)")
    parser.add_argument("--output", required=True, help="dataset folder to write")
    parser.add_argument("--file", type=_parse_file, action="append", default=[], help="SUBSET=PATH (repeatable)")
    parser.add_argument("--limit", type=int, help="at most this many rows per subset")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--rows-per-file", type=int, default=10_000)
    parser.add_argument("--license", default="other", help="licence of the annotations, for the card")
    parser.add_argument("--push-to-hub", metavar="ORG/NAME")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    if args.push_to_hub:  # before the import, which can take a while
        check_repo_id(args.push_to_hub, "--push-to-hub")
        require_token()
    root = Path(args.root)
    files: dict[str, list[Path]] = {}
    for subset, path in args.file:
        files.setdefault(subset, []).append(Path(path) if Path(path).is_absolute() else root / path)
    files = files or discover(root)
    if not files:
        raise InputError(f"no release JSON files found under {root} (or pass --file SUBSET=PATH)")
    importer = Importer(root, files, args.limit)
    out = prepare_output(args.output, args.overwrite)
    subsets = write_subsets(importer.rows(), out, args.rows_per_file)
    stats = {
        "kind": "allava-4v-import",
        "root": str(root),
        "files": {subset: [str(p) for p in paths] for subset, paths in files.items()},
        "subsets": subsets,
        "skipped": dict(sorted(importer.skipped.items())),
        "skipped_examples": importer.examples,
        "teacher_models": sorted({TEACHERS["evol" if s == "text" else s.split("_", 1)[1]] for s in subsets}),
        "prompt_versions": [PROMPT_VERSION],
        "sources": sorted({"evol" if s == "text" else s.split("_", 1)[1] for s in subsets}),
    }
    finish(out, stats, None, args.license, args.push_to_hub)
    print(json.dumps({"subsets": subsets, "skipped": stats["skipped"]}))
    if args.push_to_hub:
        print(push_to_hub(out, args.push_to_hub, args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
