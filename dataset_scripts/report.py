"""A data report people look at: one static HTML page about a dataset folder, to read before training on it.

    python dataset_scripts/report.py data/mine --output report.html [--samples 8] [--seed 0] \\
        [--tokenizer NAME_OR_PATH] [--synthesis out/laion out/text] [--audit data/mine/audit]

It reads the sources the dataset card is built from: `stats.json` (rows per subset, rejects and skips by reason,
duplicates removed, teacher, prompt version, cost) and the parquet files of each subset (a seeded sample of rows for
the gallery, lengths of every caption / question / answer, the most common question openings). Counts always come
from `stats.json`; the raw text of rejects and skips exists only in the synthesis output folders, which are read from
the paths `stats.json` records (`inputs`) or from `--synthesis` when the shards have moved. When the dataset was
audited (an audit folder, by default `<folder>/audit/` as `build_dataset.py --audit` writes it), the page also shows
the audit's counts per subset, its rule, and its lowest-ranked rows next to their images (dataset_scripts/audit.py
keeps those rows in lowest.arrow, so they show even after --drop-mismatched). `build_dataset.py` writes
`report.html` into every dataset folder it builds. The page is self-contained (inline CSS, SVG histograms, thumbnails
as data: URIs, no script) and every string from the data is escaped.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from dataset_scripts.audit import SUMMARY, read_lowest
from dataset_scripts.report_html import AuditReport, Report, SubsetReport, render
from dataset_scripts.schema import IMAGE_TOKEN, SPLIT
from modeling_allava.processing_allava import open_image
from toolkit.cli import Parser, run
from toolkit.jsonl_store import atomic_write, iter_jsonl


REPORT_NAME = "report.html"
THUMBNAIL_SIDE = 160
AUDIT_FOLDER = "audit"
AUDIT_ROWS = 12  # lowest-ranked audit rows shown with thumbnails
EXAMPLES_PER_REASON = 3
RAW_CHARS = 1500  # raw reject text shown per example
OPENING_WORDS = 3
WORDS = "whitespace-separated words"


class ReportError(RuntimeError):
    """The folder is not a dataset folder this repo wrote."""


def thumbnail(data: bytes | None, side: int = THUMBNAIL_SIDE) -> str | None:
    """A small JPEG data: URI of an image's bytes, or None when there is none, it is over the pixel budget, or it
    cannot be decoded (read through open_image, the repo's image-safety check; JPEGs decode at reduced size)."""
    if not data:
        return None

    def decode(image) -> None:
        image.draft("RGB", (side, side))
        image.load()

    try:
        with open_image(data, "thumbnail", decode=decode) as image:
            small = image.convert("RGB")
        small.thumbnail((side, side))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=82)
    except (OSError, ValueError):  # ImageTooLargeError is a ValueError
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _first_pair(conversations: list[dict]) -> tuple[str, str, int]:
    """(prompt without the image placeholder, response, number of further turns) of a row's conversation."""
    prompt = conversations[0]["value"].replace(IMAGE_TOKEN, "").strip() if conversations else ""
    response = conversations[1]["value"].strip() if len(conversations) > 1 else ""
    return prompt, response, max(len(conversations) - 2, 0)


def opening(question: str, words: int = OPENING_WORDS) -> str:
    """The first few words of a question, lower-cased: what "Describe the ..." vs "What is ..." templates look like."""
    return " ".join(question.lower().split()[:words])


def _subset_files(folder: Path, subset: str) -> list[Path]:
    return sorted((folder / subset).glob(f"{SPLIT}-*.parquet"))


def read_subset(
    folder: Path, subset: str, count: Callable[[str], int], samples: int, rng: random.Random
) -> SubsetReport:
    """Stream a subset's parquet files row group by row group; only sampled groups are read with their images."""
    import pyarrow.parquet as pq

    files = []
    for path in _subset_files(folder, subset):
        try:
            files.append(pq.ParquetFile(path))
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ReportError(f"{path}: not a readable parquet file ({error})") from None
    if not files:
        raise ReportError(f"{folder / subset}: no {SPLIT}-*.parquet files for subset {subset!r} named in stats.json")
    report = SubsetReport(subset, rows=sum(f.metadata.num_rows for f in files))
    wanted = set(rng.sample(range(report.rows), min(samples, report.rows)))
    is_caption = subset.startswith("caption")
    names = ("caption",) if is_caption else ("question", "answer")
    report.lengths = {name: [] for name in names}
    start = 0
    for parquet in files:
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            picked = sorted(i - start for i in wanted if start <= i < start + size)
            columns = ["id", "image", "conversations"] if picked else ["conversations"]
            table = parquet.read_row_group(group, columns=columns).to_pydict()
            for conversations in table["conversations"]:
                prompt, response, _ = _first_pair(conversations)
                if is_caption:
                    report.lengths["caption"].append(count(response))
                else:
                    report.lengths["question"].append(count(prompt))
                    report.lengths["answer"].append(count(response))
                    report.openings[opening(prompt)] += 1
            for index in picked:
                prompt, response, extra = _first_pair(table["conversations"][index])
                image = (table["image"][index] or {}).get("bytes")
                report.samples.append(
                    {
                        "id": table["id"][index],
                        "has_image": bool(image),
                        "thumbnail": thumbnail(image),
                        "prompt": prompt,
                        "response": response,
                        "extra_turns": extra,
                    }
                )
            start += size
    return report


def read_audit(folder: Path, stats: dict) -> AuditReport | None:
    """The audit section: audit.json's settings, counts and lowest-margin rows (the first AUDIT_ROWS with their
    image and text from lowest.arrow), and the rows build_dataset dropped; None when `folder` has no audit.json."""
    path = folder / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        kept = read_lowest(folder)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # JSONDecodeError and ArrowInvalid are ValueErrors
        raise ReportError(f"{folder}: unreadable audit ({error})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("subsets"), dict):
        raise ReportError(f"{path}: field 'subsets' is missing or not a mapping")
    rows = []
    for entry in summary.get("lowest", [])[:AUDIT_ROWS]:
        row = kept.get((entry["subset"], entry["index"]))
        prompt, response, extra = _first_pair(row["conversations"]) if row else ("", "", 0)
        image = row["image"] if row else None
        rows.append({**entry, "kept": row is not None, "thumbnail": thumbnail(image), "prompt": prompt,
                     "response": response, "extra_turns": extra})  # fmt: skip
    dropped = (stats.get("audit") or {}).get("dropped") or {}
    return AuditReport(summary, dropped, rows, len(summary.get("lowest", [])))


def _example(row: dict) -> dict:
    raw = row.get("raw")
    return {
        "origin": str(row.get("origin") or row.get("item_id") or ""),
        "detail": str(row.get("detail") or ""),
        "raw": None if raw is None else str(raw)[:RAW_CHARS],
    }


def read_examples(folders: list[Path], stats: dict) -> dict[str, dict[str, list[dict]]]:
    """A few raw rejects and skips per reason counted in stats.json, from the synthesis output folders.

    Shards are read only until every counted reason has its examples, so a huge rejects file costs little.
    """
    examples: dict[str, dict[str, list[dict]]] = {"rejected": {}, "skipped": {}}
    for kind, shard_kind in (("rejected", "rejects"), ("skipped", "skipped")):
        wanted = {reason: [] for reason in stats.get(kind) or {}}
        paths = [path for folder in folders for path in sorted(folder.glob(f"{shard_kind}-*-of-*.jsonl"))]
        missing = EXAMPLES_PER_REASON * len(wanted)
        for row in itertools.chain.from_iterable(iter_jsonl(path) for path in paths):
            if missing == 0:
                break
            listed = wanted.get(row.get("reason"))
            if listed is not None and len(listed) < EXAMPLES_PER_REASON:
                listed.append(_example(row))
                missing -= 1
        examples[kind] = {reason: listed for reason, listed in wanted.items() if listed}
    for message in stats.get("skipped_examples") or []:  # imported releases keep their examples in stats.json
        examples["skipped"].setdefault("(any reason)", []).append({"origin": "", "detail": str(message), "raw": None})
    return examples


def _synthesis_folders(stats: dict, given: list[Path] | None) -> tuple[list[Path], str]:
    if given is not None:
        return [p for p in given if p.is_dir()], "the folders given with --synthesis"
    recorded = [Path(p) for p in stats.get("inputs") or []]
    found = [p for p in recorded if p.is_dir()]
    if recorded and len(found) < len(recorded):
        missing = ", ".join(str(p) for p in recorded if not p.is_dir())
        return found, f"the synthesis folders in stats.json ({missing} not found; pass --synthesis)"
    return found, "the synthesis folders in stats.json"


def _card_title(folder: Path) -> str:
    """The dataset card's title (its first `# ` heading), else the folder's name."""
    try:
        lines = (folder / "README.md").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    titles = [line[2:].strip() for line in lines if line.startswith("# ")]
    return titles[0] if titles and titles[0] else folder.resolve().name


def load_tokenizer_count(name: str) -> Callable[[str], int]:
    """Token counts with a Hugging Face tokenizer (no special tokens), for lengths in the model's own units."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def collect(
    folder: str | Path,
    *,
    samples: int = 8,
    seed: int = 0,
    tokenizer: str | None = None,
    synthesis: list[Path] | None = None,
    audit: Path | None = None,
) -> Report:
    """Everything the page shows, read from the dataset folder (the synthesis folders for raw examples, the audit
    folder, by default <folder>/audit, for the audit section)."""
    folder = Path(folder)
    stats_path = folder / "stats.json"
    if not stats_path.is_file():
        raise ReportError(f"{folder}: no stats.json (is this a build_dataset.py or import_allava4v.py --output?)")
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{stats_path}: unreadable ({error})") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("subsets"), dict):
        raise ReportError(f"{stats_path}: field 'subsets' is missing or not a mapping")
    count = load_tokenizer_count(tokenizer) if tokenizer else (lambda text: len(text.split()))
    unit = f"tokens of {tokenizer}" if tokenizer else WORDS
    subsets = [
        read_subset(folder, name, count, samples, random.Random(f"{seed}:{name}")) for name in sorted(stats["subsets"])
    ]
    folders, source = _synthesis_folders(stats, synthesis)
    examples = read_examples(folders, stats)
    if audit is not None and not (Path(audit) / SUMMARY).is_file():
        raise ReportError(f"--audit {audit}: no {SUMMARY} (is this an audit.py --output folder?)")
    audited = read_audit(folder / AUDIT_FOLDER if audit is None else Path(audit), stats)
    return Report(_card_title(folder), stats, unit, subsets, examples, source, audited)


def write_report(folder: str | Path, output: str | Path, **options) -> Path:
    """Collect and render the report of `folder` into `output` (written atomically: never a half page)."""
    output = Path(output)
    atomic_write(output, render(collect(folder, **options)))
    return output


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv, expected=(ReportError, OSError))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Write a static HTML report of a dataset folder.",
        "python dataset_scripts/report.py datasets/allava-tiny --output report.html",
    )
    parser.add_argument("folder", help="dataset folder written by build_dataset.py or import_allava4v.py")
    parser.add_argument("--output", help=f"HTML file to write (default: <folder>/{REPORT_NAME})")
    parser.add_argument("--samples", type=int, default=8, help="gallery rows per subset (seeded random sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gallery sample")
    parser.add_argument("--tokenizer", help=f"count lengths in this tokenizer's tokens (default: {WORDS})")
    parser.add_argument(
        "--synthesis", nargs="+", help="synthesis output folders holding the raw rejects (default: from stats.json)"
    )
    parser.add_argument("--audit", help=f"audit.py output folder to show (default: <folder>/{AUDIT_FOLDER} if there)")
    args = parser.parse_args(argv)
    if args.samples < 0:
        parser.error("--samples must be 0 or more")
    output = Path(args.output) if args.output else Path(args.folder) / REPORT_NAME
    written = write_report(
        args.folder,
        output,
        samples=args.samples,
        seed=args.seed,
        tokenizer=args.tokenizer,
        synthesis=[Path(p) for p in args.synthesis] if args.synthesis else None,
        audit=Path(args.audit) if args.audit else None,
    )
    print(f"report: {written}")


if __name__ == "__main__":
    sys.exit(main())
