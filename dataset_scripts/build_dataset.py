"""Synthesis output folders (one per machine, or one with several shards) -> an ALLaVA-format dataset folder.

    python dataset_scripts/build_dataset.py --input out/ [more_out/ ...] --output my_dataset/ \\
        [--push-to-hub org/name [--private]]

Each caption-qa / vflan record gives a caption row (description + one of the caption requests) and an instruct row
(question + answer); text records give one text row. Records are deduplicated by key across all shards, images are
embedded as bytes, and the result opens with `load_dataset("my_dataset", "caption_laion", split="train")`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from dataset_scripts.audit import audit_dataset
from dataset_scripts.dataset_writer import (
    DatasetFolderError,
    finish,
    merge_counts,
    prepare_output,
    push_to_hub,
    write_subsets,
)
from dataset_scripts.dual_encoder import DualEncoder, HFDualEncoder
from dataset_scripts.filters import FilterOptions, QualityFilters, add_filter_arguments, options_from_args
from dataset_scripts.first_copies import Saving, left_out_skips
from dataset_scripts.image_pack import PackError
from dataset_scripts.report import REPORT_NAME, write_report
from dataset_scripts.schema import IMAGE_TOKEN, make_row, subset_name
from dataset_scripts.shards import iter_jsonl, read_image
from hub.upload import require_token
from toolkit.cli import InputError, Parser, check_repo_id, run


class BuildError(InputError):
    """The synthesis outputs are incomplete, inconsistent or empty (exit code 2)."""


def record_rows(record: dict, image_bytes: bytes | None) -> list[tuple[str, dict]]:
    """(subset, row) pairs of one synthesis record: caption + instruct for image modes, one row for text."""
    short = record["key"][:16]
    source = record["source"]
    provenance = {
        "source": source,
        "teacher_model": record["teacher_model"],
        "prompt_version": record["prompt_version"],
        "prompt_hash": record["prompt_hash"],
        "origin": record["origin"],
        "original_caption": record.get("original_caption"),
        "mode": record["mode"],
    }
    if record["mode"] == "text":
        conversations = [{"from": "human", "value": record["question"]}, {"from": "gpt", "value": record["answer"]}]
        return [("text", make_row(f"allava_text_{short}", conversations, None, **provenance))]
    rows = []
    if record.get("description"):
        conversations = [
            {"from": "human", "value": f"{IMAGE_TOKEN}\n{record['caption_request']}"},
            {"from": "gpt", "value": record["description"]},
        ]
        row = make_row(f"allava_{source}_cap_{short}", conversations, image_bytes, **provenance)
        rows.append((subset_name("caption", source), row))
    conversations = [
        {"from": "human", "value": f"{IMAGE_TOKEN}\n{record['question']}"},
        {"from": "gpt", "value": record["answer"]},
    ]
    row = make_row(f"allava_{source}_inst_{short}", conversations, image_bytes, **provenance)
    rows.append((subset_name("instruct", source), row))
    return rows


def _shard_files(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.glob(f"{kind}-*-of-*.jsonl"))


# stats name -> record field, for the lists of distinct values the card reports
_FACETS = {
    "modes": "mode",
    "strategies": "strategy",
    "teacher_models": "teacher_model",
    "prompt_versions": "prompt_version",
    "prompt_hashes": "prompt_hash",
    "sources": "source",
}


class Builder:
    """Streams records from the input folders (dedup by key) and gathers the stats the card reports."""

    def __init__(self, inputs: list[Path], filters: FilterOptions | None = None) -> None:
        for folder in inputs:
            if not folder.is_dir() or not _shard_files(folder, "records"):
                raise BuildError(f"{folder}: no records-*-of-*.jsonl shards (is this a synthesize.py --output?)")
        self.inputs = inputs
        self.seen: set[str] = set()
        self.done_items: set[str] = set()
        self.duplicates = 0
        self.usage: Counter = Counter()
        self.cost = 0.0
        self.priced = False  # whether any run had a price: without one, records carry a cost of 0 that means unknown
        self.facets: dict[str, set] = {name: set() for name in (*_FACETS, "sampling")}
        self.saved = Saving()  # near-duplicate images synthesis skipped (left_out)
        self.filters = QualityFilters(filters or FilterOptions())

    def has_records(self) -> bool:
        """Whether any shard holds a record (every record gives at least one row)."""
        for folder in self.inputs:
            for path in _shard_files(folder, "records"):
                with closing(iter_jsonl(path)) as records:
                    if next(records, None) is not None:
                        return True
        return False

    def rows(self) -> Iterator[tuple[str, dict]]:
        for folder in self.inputs:
            for path in _shard_files(folder, "records"):
                for record in iter_jsonl(path):
                    self._account(record)
                    self.done_items.add(record["item_id"])
                    if record["key"] in self.seen:
                        self.duplicates += 1
                        continue
                    self.seen.add(record["key"])
                    for facet, field in _FACETS.items():
                        self.facets[facet].add(record[field])
                    self.facets["sampling"].add(json.dumps(record["sampling"], sort_keys=True))
                    image = self._image(folder, record)
                    yield from self.filters.keep(record, image, record_rows(record, image))

    def _account(self, record: dict) -> None:
        usage = record.get("usage") or {}
        self.usage.update({k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "requests")})
        self.cost += usage.get("cost_usd", 0.0)

    @staticmethod
    def _image(folder: Path, record: dict) -> bytes | None:
        if record.get("image") is None:
            return None
        try:
            return read_image(folder, record)
        except OSError:
            raise BuildError(
                f"record {record['key']} points at {folder / record['image']}, which is missing: "
                "copy the image packs (images-*.pack) with the shards"
            ) from None
        except PackError as error:
            raise BuildError(f"record {record['key']}: {error}") from None

    def left_out(self) -> tuple[dict, dict, dict]:
        """(rejected, skipped) inputs by reason over all shards, leaving out any later finished; and the prompts."""
        rejected, prompts = {}, {}
        for folder in self.inputs:
            for path in _shard_files(folder, "rejects"):
                for row in iter_jsonl(path):
                    self._account(row)
                    rejected[row["item_id"]] = row["reason"]
            for path in sorted(folder.glob("summary-*-of-*.json")):
                summary = json.loads(path.read_text(encoding="utf-8"))
                prompts.update(summary.get("prompts") or {})
                self.priced = self.priced or summary.get("price_usd_per_1m") is not None
        finished = self.done_items
        rejected_counts = Counter(reason for item, reason in rejected.items() if item not in finished)
        skips = (row for folder in self.inputs for path in _shard_files(folder, "skipped") for row in iter_jsonl(path))
        skipped_counts, self.saved = left_out_skips(skips, finished, rejected)
        return merge_counts(rejected_counts), merge_counts(skipped_counts), prompts


def build(
    inputs: list[Path],
    out: Path,
    *,
    overwrite: bool = False,
    rows_per_file: int = 10_000,
    pretty_name: str | None = None,
    license: str = "other",
    repo_id: str | None = None,
    filters: FilterOptions | None = None,
    audit: tuple[str, DualEncoder] | None = None,
    drop_mismatched: bool = False,
) -> dict:
    """Write the dataset folder; returns its stats (also in stats.json and the card). With `audit` (model name,
    encoder), the rows are scored for image-text agreement (dataset_scripts/audit.py) and, with `drop_mismatched`,
    the flagged ones removed."""
    builder = Builder(inputs, filters)
    if not builder.has_records():  # checked before the output folder (maybe an earlier build) is replaced
        rejected, skipped, _ = builder.left_out()
        raise BuildError(
            f"no records in {', '.join(map(str, inputs))}: nothing to build (every input was rejected or skipped; "
            f"rejected by reason: {rejected or 'none'}; skipped by reason: {skipped or 'none'})"
        )
    out = prepare_output(out, overwrite)
    subsets = write_subsets(builder.rows(), out, rows_per_file)
    audited = None
    if audit is not None:
        audited = audit_dataset(out, audit[1], audit[0], drop=drop_mismatched, rows_per_file=rows_per_file)
        subsets = {name: rows - audited["dropped"].get(name, 0) for name, rows in subsets.items()}
        subsets = {name: rows for name, rows in subsets.items() if rows}
    rejected, skipped, prompts = builder.left_out()
    stats = {
        "kind": "synthesized",
        "inputs": [str(path) for path in inputs],
        "subsets": subsets,
        "records": len(builder.seen),
        "duplicates_dropped": builder.duplicates,
        "filtered": builder.filters.report(),
        "rejected": rejected,
        "skipped": skipped,
        "requests": builder.usage["requests"],
        "tokens": {"prompt": builder.usage["prompt_tokens"], "completion": builder.usage["completion_tokens"]},
        "cost_usd": round(builder.cost, 6) if builder.priced or builder.cost else None,
        "near_duplicates": builder.saved.report(builder.priced),  # skipped by synthesis before any request
        **{name: sorted(values) for name, values in builder.facets.items() if name != "sampling"},
        "sampling": [json.loads(s) for s in sorted(builder.facets["sampling"])],
        "prompts": prompts,
        "audit": audited,
    }
    finish(out, stats, pretty_name, license, repo_id)
    write_report(out, out / REPORT_NAME)
    return stats


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(DatasetFolderError, ValueError, OSError))


def _main(argv: list[str] | None) -> int:
    parser = Parser(
        "Merge synthesis output folders into an ALLaVA-format dataset folder (parquet subsets + card).",
        "python dataset_scripts/build_dataset.py --input out/ --output my_dataset/",
    )
    parser.add_argument("--input", nargs="+", required=True, help="synthesize.py output folder(s)")
    parser.add_argument("--output", required=True, help="dataset folder to write (parquet + README.md + stats.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--rows-per-file", type=int, default=10_000, help="rows per parquet file")
    parser.add_argument("--pretty-name", help="dataset title in the card")
    parser.add_argument("--license", default="other", help="licence of the annotations, for the card")
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="also upload the folder as a Hub dataset")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    add_filter_arguments(parser)
    parser.add_argument("--audit", metavar="MODEL", help="score image-text agreement with this CLIP/SigLIP (audit.py)")
    parser.add_argument("--drop-mismatched", action="store_true", help="with --audit: remove the flagged rows")
    args = parser.parse_args(argv)
    if args.drop_mismatched and not args.audit:
        raise InputError("--drop-mismatched needs --audit MODEL")
    if args.push_to_hub:  # before the build, which can take a while
        check_repo_id(args.push_to_hub, "--push-to-hub")
        require_token()
    try:
        filters = options_from_args(args)
    except ValueError as error:
        raise InputError(str(error)) from None
    stats = build(
        [Path(p) for p in args.input],
        Path(args.output),
        overwrite=args.overwrite,
        rows_per_file=args.rows_per_file,
        pretty_name=args.pretty_name,
        license=args.license,
        repo_id=args.push_to_hub,
        filters=filters,
        audit=(args.audit, HFDualEncoder(args.audit)) if args.audit else None,
        drop_mismatched=args.drop_mismatched,
    )
    print(json.dumps({"subsets": stats["subsets"], "rejected": stats["rejected"], "skipped": stats["skipped"]}))
    if args.push_to_hub:
        print(push_to_hub(Path(args.output), args.push_to_hub, args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
