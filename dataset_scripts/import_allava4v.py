"""The original ALLaVA-4V release (JSON files + image folders) -> the same dataset format build_dataset.py writes.

    python dataset_scripts/import_allava4v.py --root ALLaVA-4V/ --output allava4v/
    python dataset_scripts/import_allava4v.py --root ALLaVA-4V/ --output allava4v/ \
        --file caption_laion=allava_laion/ALLaVA-Caption-LAION-4V.json --file text=allava_text/evol.json

Without --file, every *.json under --root whose name says which subset it is (Caption/Instruct + LAION/VFLAN, or
Evol-Instruct for text; a `_Chinese` file of the ALLaVA-4V-Chinese release goes to `<subset>_zh`) is imported.
Each file's annotation version is named from its row count (dataset_scripts/allava_release.py), with a warning for
a superseded one. Image paths in the JSON are relative to --root. Rows whose image is missing (about a tenth of
LAION URLs died before release; some downloads are partial; listed in missing_images.jsonl), lies outside --root,
does not decode as an image within the pixel budget, or whose conversation is malformed are skipped and counted,
never fatal. In the Chinese subsets, rows whose text is not mostly Chinese (failed translations) are dropped by
build_dataset's language filter and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from dataset_scripts.allava_release import describe, identify, ids_digest, laion_pairing_warning, warning_for
from dataset_scripts.dataset_writer import (
    DatasetFolderError,
    finish,
    prepare_output,
    push_to_hub,
    write_subsets,
)
from dataset_scripts.filters import FilterOptions, wrong_script
from dataset_scripts.schema import IMAGE_TOKEN, KNOWN_SUBSETS, make_row
from hub.upload import require_token
from modeling_allava.processing_allava import ImageTooLargeError, open_image
from toolkit.cli import InputError, Parser, check_repo_id, run


PROMPT_VERSION = "allava-4v-release"
TEACHERS = {"laion": "gpt-4v", "vflan": "gpt-4v", "evol": "gpt-4-turbo"}
CHINESE = "_zh"  # subset suffix for the files of the ALLaVA-4V-Chinese release (translated with ChatGPT)
MISSING_LIST = "missing_images.jsonl"
IMPORT_SUBSETS = (*KNOWN_SUBSETS, *(f"{name}{CHINESE}" for name in KNOWN_SUBSETS if name != "text"))


class ReleaseError(RuntimeError):
    """The release folder does not look as expected."""


def subset_of(filename: str) -> str | None:
    """Which subset a release file holds, from its name (e.g. ALLaVA-Instruct-VFLAN-4V.json -> instruct_vflan)."""
    name = filename.lower()
    if "evol" in name or "text" in name:
        return "text"
    kind = "caption" if "caption" in name else "instruct" if "instruct" in name else None
    source = "laion" if "laion" in name else "vflan" if "vflan" in name else None
    chinese = CHINESE if "chinese" in name or name.endswith("_zh.json") else ""
    return f"{kind}_{source}{chinese}" if kind and source else None


def source_of(subset: str) -> str:
    """laion, vflan or evol (the text subset)."""
    return "evol" if subset == "text" else subset.removesuffix(CHINESE).split("_", 1)[1]


def discover(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.json")):
        subset = subset_of(path.name)
        if subset is not None:
            found.setdefault(subset, []).append(path)
    return found


class Importer:
    """Converts release rows one by one, counts what it leaves out and names the version of each file it reads."""

    def __init__(self, root: Path, files: dict[str, list[Path]], limit: int | None, language_filter: bool = True):
        self.root = root
        self.files = files
        self.limit = limit
        self.language_filter = language_filter
        self.skipped: Counter = Counter()
        self.examples: list[str] = []
        self.missing: list[dict] = []  # rows whose image file is not there, for missing_images.jsonl
        self.release: list[dict] = []  # one entry per file: rows, version, id digest
        self.warnings: list[str] = []
        self._laion_ids: dict[str, list[str]] = {}

    def _skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(message)

    def _read(self, subset: str, path: Path) -> list:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ReleaseError(f"{path}: cannot read the release JSON ({error})") from None
        if not isinstance(entries, list):
            raise ReleaseError(f"{path}: expected a JSON list of rows")
        self._note_version(subset, path, entries)
        return entries

    def _note_version(self, subset: str, path: Path, entries: list) -> None:
        """Which annotation version the file is (by its row count) and its id digest; warns on a superseded one."""
        ids = [str(entry.get("id")) for entry in entries if isinstance(entry, dict) and entry.get("id") is not None]
        version = identify(subset, len(entries))
        self.release.append({**describe(str(path), subset, len(entries), version), "ids_sha256": ids_digest(ids)})
        if version is not None and version.superseded:
            self._warn(warning_for(str(path), len(entries), version))
        if subset.removesuffix(CHINESE) in ("caption_laion", "instruct_laion"):
            self._laion_ids.setdefault(subset, []).extend(ids)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)

    def check_laion_pairing(self) -> None:
        """Caption and instruct LAION files of one release describe the same images; warn when they do not."""
        for suffix in ("", CHINESE):
            caption = self._laion_ids.get(f"caption_laion{suffix}")
            instruct = self._laion_ids.get(f"instruct_laion{suffix}")
            message = laion_pairing_warning(caption, instruct) if caption and instruct else None
            if message:
                self._warn(message)

    def rows(self) -> Iterator[tuple[str, dict]]:
        for subset, paths in self.files.items():
            written = 0
            for path in paths:
                for number, entry in enumerate(self._read(subset, path)):
                    if self.limit is not None and written >= self.limit:
                        break
                    row = self._convert(subset, entry, f"{path.name}[{number}]")
                    if row is not None:
                        written += 1
                        yield subset, row
        self.check_laion_pairing()

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
            self.missing.append({"where": where, "image": relative})
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
        source = source_of(subset)
        row_id = str(entry.get("id") or f"allava_text_{entry.get('idx', where)}")
        if subset.endswith(CHINESE) and self.language_filter and _not_chinese(entry.get("conversations")):
            self._skip("failed_translation", f"{where} ({row_id}): text not mostly Chinese")
            return None
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


def _not_chinese(conversations: object) -> bool:
    """Whether a turn's letters are mostly not Chinese (build_dataset's language filter, --language zh)."""
    if not isinstance(conversations, list):
        return False  # malformed: make_row says why
    share = FilterOptions().min_script_share
    texts = [turn.get("value") for turn in conversations if isinstance(turn, dict)]
    return any(isinstance(t, str) and wrong_script(t.replace(IMAGE_TOKEN, ""), "zh", share) for t in texts)


def _parse_file(text: str) -> tuple[str, str]:
    subset, _, path = text.partition("=")
    if subset not in IMPORT_SUBSETS or not path:
        raise argparse.ArgumentTypeError(f"expected SUBSET=PATH with SUBSET in {IMPORT_SUBSETS}, got {text!r}")
    return subset, path


def _stats(root: Path, files: dict[str, list[Path]], subsets: dict[str, int], importer: Importer) -> dict:
    """stats.json of an import: what was read (and which version), written and left out."""
    chinese = sorted(subset for subset in files if subset.endswith(CHINESE))
    return {
        "kind": "allava-4v-import",
        "root": str(root),
        "files": {subset: [str(p) for p in paths] for subset, paths in files.items()},
        "release": importer.release,
        "release_warnings": importer.warnings,
        "subsets": subsets,
        "skipped": dict(sorted(importer.skipped.items())),
        "skipped_examples": importer.examples,
        "missing_images_list": MISSING_LIST,
        "language_filter": {
            "subsets": chinese,
            "applied": importer.language_filter and bool(chinese),
            "min_script_share": FilterOptions().min_script_share,
        },
        "languages": ["en", "zh"] if chinese else ["en"],
        "teacher_models": sorted({TEACHERS[source_of(s)] for s in subsets}),
        "prompt_versions": [PROMPT_VERSION],
        "sources": sorted({source_of(s) for s in subsets}),
    }


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
    parser.add_argument(
        "--no-language-filter", action="store_true", help="keep Chinese-subset rows whose text is not mostly Chinese"
    )
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
    importer = Importer(root, files, args.limit, language_filter=not args.no_language_filter)
    out = prepare_output(args.output, args.overwrite)
    subsets = write_subsets(importer.rows(), out, args.rows_per_file)
    stats = _stats(root, files, subsets, importer)
    (out / MISSING_LIST).write_text("".join(json.dumps(row) + "\n" for row in importer.missing), encoding="utf-8")
    finish(out, stats, None, args.license, args.push_to_hub)
    print(json.dumps({"subsets": subsets, "skipped": stats["skipped"], "warnings": len(importer.warnings)}))
    if args.push_to_hub:
        print(push_to_hub(out, args.push_to_hub, args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
