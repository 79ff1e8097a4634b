"""Image-text agreement audit: which rows of a dataset have a text that does not fit their own image?

    python dataset_scripts/audit.py --dataset data/mine --output data/mine-audit \\
        [--model openai/clip-vit-large-patch14-336] [--batch-size 64] [--seed 0] [--margin 0]

Every row with an image is scored with a dual encoder (CLIP or SigLIP, both towers): the cosine similarity of its
text with its own image, and of the same text with the other images of its batch. Batches are a seeded shuffle of
all rows of all subsets, so those other images are a random sample of the dataset (images identical to the row's own,
such as the caption and instruct rows of one picture, are left out). The baseline is their median: a row whose own
image does not beat the typical other image by more than `--margin` is flagged as a likely mismatch.

The text is the reply for caption rows (the caption request says nothing about the image) and the question, then the
reply, for the others; the encoder's tokenizer cuts it to its context (dataset_scripts/dual_encoder.py), and each row
records its token count and whether it was cut. Outputs in --output: scores.jsonl (one row per scored row: subset,
index, id, score, baseline, margin, rank = share of other images that scored at least as high, others, tokens,
truncated, flagged), audit.json (settings, counts per subset, the lowest-margin rows) and lowest.arrow (those rows'
image bytes and conversations, so the data report can show them after --drop-mismatched removed them). scores.jsonl
is appended a batch at a time and fsync'd: a rerun with the same settings skips the rows already scored.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dataset_scripts.dataset_writer import write_subsets
from dataset_scripts.dual_encoder import DualEncoder, HFDualEncoder
from modeling_allava.processing_allava import IMAGE_TOKEN
from toolkit.cli import InputError, Parser, run
from toolkit.jsonl_store import JsonlStore, atomic_write


DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"
SCORES = "scores.jsonl"
SUMMARY = "audit.json"
LOWEST_ROWS = "lowest.arrow"  # Arrow IPC, not parquet: load_subsets must not read the audit folder as a subset
RULE = "flagged when the own-image score minus the median score of the same text against other images is <= margin"
REQUIRED_COLUMNS = ("id", "image", "conversations")
Key = tuple[str, int]  # (subset, row index)


def load_subsets(folder: Path) -> dict[str, Any]:
    """{subset: Dataset with id / image (undecoded bytes) / conversations}: a save_to_disk folder (a DatasetDict's
    names or one Dataset) or a dataset folder as build_dataset.py and import_allava4v.py write (<subset>/*.parquet)."""
    import datasets

    if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        loaded = datasets.load_from_disk(str(folder))
        tables = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {folder.name: loaded}
    else:
        parts = {sub.name: sorted(sub.glob("*.parquet")) for sub in sorted(folder.iterdir()) if sub.is_dir()}
        tables = {
            name: datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train")
            for name, files in parts.items()
            if files
        }
    if not tables:
        raise InputError(f"{folder}: no subsets (expected <subset>/*.parquet or a save_to_disk folder)")
    for name, table in tables.items():
        missing = [column for column in REQUIRED_COLUMNS if column not in table.column_names]
        if missing:
            raise InputError(f"{folder}: subset {name} has no column(s) {missing}")
        tables[name] = table.select_columns(list(REQUIRED_COLUMNS)).cast_column("image", datasets.Image(decode=False))
    return tables


def row_text(subset: str, conversations: list[dict]) -> str:
    """What the image must agree with: the reply, after the question unless it is a caption row."""
    question = next((t["value"] for t in conversations if t["from"] == "human"), "")
    reply = next((t["value"] for t in reversed(conversations) if t["from"] == "gpt"), "")
    question = question.replace(IMAGE_TOKEN, "").strip()
    return reply if subset.startswith("caption") or not question else f"{question} {reply}"


def plan_batches(keys: list[Key], seed: int, batch_size: int) -> list[list[Key]]:
    """A seeded shuffle of all rows, cut into batches; a last batch under half the size joins the one before."""
    order = sorted(keys)
    random.Random(seed).shuffle(order)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size / 2:
        batches[-2].extend(batches.pop())
    return batches


def score_batch(keys: list[Key], rows: list[dict], encoder: DualEncoder, margin: float) -> list[dict]:
    """One output row per input row: own score, the median over the batch's other images, rank, flag."""
    image_bytes = [row["image"]["bytes"] for row in rows]
    texts = [row_text(subset, row["conversations"]) for (subset, _), row in zip(keys, rows, strict=True)]
    image_features = encoder.images(image_bytes)
    text_features, lengths = encoder.texts(texts)
    scores = text_features @ image_features.T
    digests = [hashlib.sha1(data).digest() for data in image_bytes]
    results = []
    for i, ((subset, index), row) in enumerate(zip(keys, rows, strict=True)):
        own = float(scores[i, i])
        others = scores[i, [j for j in range(len(rows)) if digests[j] != digests[i]]]
        baseline = float(np.median(others)) if len(others) else None
        results.append(
            {
                "subset": subset,
                "index": index,
                "id": row["id"],
                "score": round(own, 6),
                "baseline": None if baseline is None else round(baseline, 6),
                "margin": None if baseline is None else round(own - baseline, 6),
                "rank": round(float(np.mean(others >= own)), 6) if len(others) else None,
                "others": len(others),
                "tokens": lengths[i],
                "truncated": lengths[i] > encoder.context,
                "flagged": baseline is not None and own - baseline <= margin,
            }
        )
    return results


class Audit:
    """Plans the batches over a dataset folder and scores them into --output, resuming where a run stopped."""

    def __init__(self, dataset: Path, output: Path, *, seed: int = 0, batch_size: int = 64, margin: float = 0.0):
        if batch_size < 2:
            raise InputError("--batch-size must be at least 2: a row is compared with the other images of its batch")
        self.dataset = dataset
        self.output = output
        self.tables = load_subsets(dataset)
        self.settings = {"dataset": str(dataset), "seed": seed, "batch_size": batch_size, "margin": margin}
        self.keys: list[Key] = []
        self.no_image: dict[str, int] = {}
        for name, table in self.tables.items():
            present = table.data.column("image").is_valid().to_pylist()
            self.keys += [(name, index) for index, valid in enumerate(present) if valid]
            self.no_image[name] = present.count(False)

    def _store(self, model: str) -> tuple[JsonlStore, set[Key]]:
        header = {"audit": {**self.settings, "model": model, "rows": {n: len(t) for n, t in self.tables.items()}}}
        store = JsonlStore(self.output / SCORES)
        store.open(header)
        rows = list(store.rows())
        if rows and rows[0] != header:
            store.close()
            raise InputError(
                f"{store.path} was made with other settings or another dataset ({json.dumps(rows[0].get('audit'))}); "
                "use another --output or remove it"
            )
        return store, {(row["subset"], row["index"]) for row in rows[1:] if "index" in row}

    def run(self, encoder: DualEncoder, model: str, progress: bool = True) -> dict:
        """Score every row not yet in scores.jsonl, then write audit.json; returns the summary."""
        store, done = self._store(model)
        bar = tqdm(total=len(self.keys), initial=len(done), unit="row", disable=not progress, smoothing=0.1)
        try:
            for batch in plan_batches(self.keys, self.settings["seed"], self.settings["batch_size"]):
                if all(key in done for key in batch):
                    continue
                rows = [self.tables[subset][index] for subset, index in batch]
                new = [r for r in score_batch(batch, rows, encoder, self.settings["margin"]) if _key(r) not in done]
                store.append_many(new)
                bar.update(len(new))
        finally:
            bar.close()
            store.close()
        summary = self.summary(model, encoder.context)
        self._keep_lowest(summary["lowest"])
        atomic_write(self.output / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    def _keep_lowest(self, lowest: list[dict]) -> None:
        """Write the lowest-margin rows (subset, index, id, image bytes, conversations) to lowest.arrow."""
        import pyarrow as pa

        turn = pa.struct([("from", pa.string()), ("value", pa.string())])
        schema = pa.schema([("subset", pa.string()), ("index", pa.int64()), ("id", pa.string()),
                            ("image", pa.binary()), ("conversations", pa.list_(turn))])  # fmt: skip
        rows = []
        for entry in lowest:
            row = self.tables[entry["subset"]][entry["index"]]
            turns = [{"from": t["from"], "value": t["value"]} for t in row["conversations"]]
            image = row["image"]["bytes"]
            rows.append({**entry, "id": row["id"], "image": image, "conversations": turns})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        atomic_write(self.output / LOWEST_ROWS, sink.getvalue().to_pybytes())

    def scored(self) -> Iterator[dict]:
        return (row for row in JsonlStore(self.output / SCORES).rows() if "index" in row)

    def summary(self, model: str, context: int, lowest: int = 20) -> dict:
        subsets = {
            name: {"rows": len(table), "no_image": self.no_image[name], "scored": 0, "flagged": 0, "truncated": 0}
            for name, table in self.tables.items()
        }
        ranked = []
        for row in self.scored():
            counts = subsets[row["subset"]]
            counts["scored"] += 1
            counts["flagged"] += row["flagged"]
            counts["truncated"] += row["truncated"]
            if row["margin"] is not None:
                ranked.append(row)
        ranked.sort(key=lambda row: row["margin"])
        return {
            **self.settings,
            "model": model,
            "context_tokens": context,
            "rule": RULE,
            "text": "caption rows: the reply; other rows: the question, then the reply; cut to the first "
            f"{context} tokens by the encoder's tokenizer",
            "subsets": subsets,
            "flagged": sum(counts["flagged"] for counts in subsets.values()),
            "lowest": ranked[:lowest],
        }


def _key(row: dict) -> Key:
    return row["subset"], row["index"]


def read_lowest(folder: Path) -> dict[Key, dict]:
    """{(subset, index): row with id, image bytes, conversations} from an audit folder's lowest.arrow ({} if none)."""
    import pyarrow as pa

    path = folder / LOWEST_ROWS
    if not path.is_file():
        return {}
    with pa.memory_map(str(path)) as source:
        rows = pa.ipc.open_file(source).read_all().to_pylist()
    return {_key(row): row for row in rows}


def drop_flagged(folder: Path, flagged: dict[str, set[int]], rows_per_file: int = 10_000) -> dict[str, int]:
    """Rewrite the parquet files of each subset with flagged rows (by row index) without them; rows dropped per subset.
    Rows stream from the old files into new ones in a sibling folder, which then replaces the subset's folder."""
    import pyarrow.parquet as pq

    dropped = {}
    for subset, indices in sorted(flagged.items()):
        if not indices:
            continue
        files = sorted((folder / subset).glob("*.parquet"))
        staging = folder / f".{subset}.rewrite"
        shutil.rmtree(staging, ignore_errors=True)

        def kept(files=files, indices=indices, subset=subset) -> Iterator[tuple[str, dict]]:
            index = 0
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
                    for row in batch.to_pylist():
                        if index not in indices:
                            yield subset, row
                        index += 1

        written = write_subsets(kept(), staging, rows_per_file)
        (folder / subset).rename(staging / "replaced")
        if written:  # a subset whose every row was flagged is gone
            (staging / subset).rename(folder / subset)
        shutil.rmtree(staging)
        dropped[subset] = len(indices)
    return dropped


def audit_dataset(folder: Path, encoder: DualEncoder, model: str, *, drop: bool, rows_per_file: int) -> dict:
    """build_dataset --audit: score the folder just written into <folder>/audit/, and with `drop` remove the flagged
    rows from it. Returns the stats the card reports (counts per subset, rule, rows dropped)."""
    audit = Audit(folder, folder / "audit")
    summary = audit.run(encoder, model)
    flagged: dict[str, set[int]] = {name: set() for name in audit.tables}
    for row in audit.scored():
        if row["flagged"]:
            flagged[row["subset"]].add(row["index"])
    return {
        "model": model,
        "rule": f"{RULE} (margin {summary['margin']}, batches of {summary['batch_size']}, seed {summary['seed']})",
        "text": summary["text"],
        "flagged": {name: len(indices) for name, indices in flagged.items() if indices},
        "dropped": drop_flagged(folder, flagged, rows_per_file) if drop else {},
        "scores": f"audit/{SCORES}",
    }


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(OSError,))


def _main(argv: list[str] | None) -> int:
    parser = Parser(
        "Score each row's image-text agreement with a dual encoder and flag likely mismatches.",
        "python dataset_scripts/audit.py --dataset data/mine --output data/mine-audit",
    )
    parser.add_argument(
        "--dataset", required=True, help="dataset folder (build_dataset / import output, or save_to_disk)"
    )
    parser.add_argument("--output", required=True, help="folder for scores.jsonl and audit.json (resumable)")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"CLIP or SigLIP, Hub id or folder (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="rows per batch; each row meets batch-size - 1 others"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle that makes the batches")
    parser.add_argument(
        "--margin", type=float, default=0.0, help="flag when own score - baseline <= this (default: 0)"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise InputError(f"--dataset {dataset}: not a folder")
    audit = Audit(dataset, Path(args.output), seed=args.seed, batch_size=args.batch_size, margin=args.margin)
    try:
        encoder = HFDualEncoder(args.model, args.device)
    except ValueError as error:
        raise InputError(str(error)) from None
    summary = audit.run(encoder, args.model, progress=not args.no_progress)
    print(json.dumps({"flagged": summary["flagged"], "subsets": summary["subsets"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
