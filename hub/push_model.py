"""Publish an ALLaVA checkpoint to the Hugging Face Hub with its remote code, processor and a real model card.

    python hub/push_model.py runs/allava-phi2/finetune --repo-id my-org/allava-phi2 [--private] [--revision dev]
    python hub/push_model.py runs/allava-phi2/finetune --repo-id my-org/allava-phi2 --dry-run --upload-dir out/

The checkpoint is loaded and saved again (not copied), so the upload always carries sharded safetensors, the three
remote-code files with the full `auto_map`, the processor with its chat template, and the generation config, whatever
the training run happened to write. `--dry-run` writes exactly the folder that would be uploaded and sends nothing.
The token comes from `HF_TOKEN` or `hf auth login`; it is never a flag and never printed.
"""

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hub.checkpoint_files import check_upload_folder, read_allava_config, read_json
from hub.model_card import build_model_card, incomplete_benchmarks, scored_benchmarks
from hub.upload import require_token, upload_folder
from toolkit.cli import Parser, check_repo_id, existing_folder, run


# Copied next to the weights when present: they document where the card's numbers come from.
PROVENANCE_FILES = ("results.json", "training_summary.json")
# Remote files that a new upload replaces wholesale, so stale shards from an earlier push never linger.
STALE_WEIGHT_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
]
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def default_base_models(config: dict[str, Any], training: dict[str, Any] | None) -> list[str]:
    """Hub ids of the vision and text backbones: from training_summary.json, else the sub-configs' `_name_or_path`.

    Local paths are left out: the Hub only accepts repo ids as `base_model`.
    """
    recorded = (training or {}).get("base_models") or {}
    names = [recorded.get("vision"), recorded.get("text")] if isinstance(recorded, dict) else list(recorded)
    if not any(names):
        names = [config.get(part, {}).get("_name_or_path") for part in ("vision_config", "text_config")]
    return [name for name in names if isinstance(name, str) and _HUB_ID.match(name) and not Path(name).exists()]


def build_upload_folder(
    checkpoint: Path,
    upload_dir: Path,
    *,
    repo_id: str,
    license: str,
    base_models: list[str] | None = None,
    datasets: list[str] | None = None,
    max_shard_size: str = "5GB",
) -> Path:
    """Write everything the Hub repo should hold into `upload_dir` (which must be empty or absent)."""
    from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor

    config = read_allava_config(checkpoint)
    if upload_dir.exists() and any(upload_dir.iterdir()):
        raise FileExistsError(f"{upload_dir} is not empty; pick an empty --upload-dir so nothing stale is uploaded.")
    training = read_json(checkpoint / "training_summary.json")
    results = read_json(checkpoint / "results.json")
    benchmarks = scored_benchmarks(results, str(checkpoint / "results.json")) if results else {}
    for name, reason in incomplete_benchmarks(benchmarks).items():
        print(f"warning: results.json: {name} is listed as partial, not in model-index: {reason}", file=sys.stderr)

    model = AllavaForConditionalGeneration.from_pretrained(checkpoint, dtype="auto")
    processor = AllavaProcessor.from_pretrained(checkpoint)
    # transformers writes how the tokenizer was loaded (offline or not) into tokenizer_config.json: keep it out.
    processor.tokenizer.init_kwargs.pop("local_files_only", None)
    model.save_pretrained(upload_dir, max_shard_size=max_shard_size)
    processor.save_pretrained(upload_dir)
    for name in PROVENANCE_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, upload_dir / name)

    example = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat sleeping on a sofa."}]},
    ]
    card = build_model_card(
        read_json(upload_dir / "config.json", required=True),
        repo_id=repo_id,
        license=license,
        prompt_example=processor.apply_chat_template(example, tokenize=False),
        base_models=base_models if base_models is not None else default_base_models(config, training),
        datasets=datasets if datasets is not None else list((training or {}).get("datasets") or []),
        benchmarks=benchmarks,
        training=training,
        trainer_state=read_json(checkpoint / "trainer_state.json"),
    )
    card.save(upload_dir / "README.md")
    check_upload_folder(upload_dir)
    return upload_dir


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(ValueError, OSError))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: checkpoint, target repo and the card's licence, base models and datasets."""
    parser = Parser(
        "Publish an ALLaVA checkpoint to the Hub with its remote code, processor and model card.",
        "python hub/push_model.py runs/allava-phi2/finetune --repo-id my-org/allava-phi2 --dry-run",
    )
    parser.add_argument("checkpoint", type=Path, help="folder written by recipes/sft.py or the converter")
    parser.add_argument("--repo-id", required=True, help="org/name on the Hub")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)"
    )
    parser.add_argument("--revision", help="branch to push to (created from main if missing)")
    parser.add_argument("--dry-run", action="store_true", help="write the upload folder only; send nothing")
    parser.add_argument(
        "--upload-dir",
        type=Path,
        help="where to build the upload (default: <checkpoint>-upload on --dry-run, else a temp dir)",
    )
    parser.add_argument("--license", default="apache-2.0", help="licence id for the card (default: apache-2.0)")
    parser.add_argument(
        "--base-model",
        action="append",
        dest="base_models",
        help="base model hub id (repeat; default: from the checkpoint)",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        dest="datasets",
        help="training dataset hub id (repeat; default: training_summary.json)",
    )
    parser.add_argument("--max-shard-size", default="5GB")
    parser.add_argument("--commit-message", default="Upload ALLaVA model")
    return parser.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    """Bad input fails here, before any model library is imported or anything is written."""
    existing_folder(args.checkpoint, "checkpoint")
    check_repo_id(args.repo_id, "--repo-id")
    for flag, values in (("--base-model", args.base_models), ("--dataset", args.datasets)):
        for value in values or []:
            check_repo_id(value, flag)
    read_allava_config(args.checkpoint)  # before the model libraries are imported
    if not args.dry_run:
        require_token()


def _dry_run(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """Write the upload folder (default <checkpoint>-upload) and list its files; send nothing."""
    folder = build_upload_folder(args.checkpoint, args.upload_dir or Path(f"{args.checkpoint}-upload"), **options)
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    print(f"Dry run: {len(files)} files that would be uploaded to {args.repo_id} are in {folder}:")
    print("\n".join(f"  {name}" for name in files))


def _upload(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """Build the upload folder (a temp dir unless --upload-dir) and push it, removing stale weight files."""
    with tempfile.TemporaryDirectory(prefix="allava-upload-") as scratch:
        folder = build_upload_folder(args.checkpoint, args.upload_dir or Path(scratch), **options)
        print(
            upload_folder(
                folder,
                args.repo_id,
                private=args.private,
                revision=args.revision,
                commit_message=args.commit_message,
                delete_patterns=STALE_WEIGHT_PATTERNS,
            )
        )


def _main(argv: list[str] | None) -> None:
    args = _parse_args(argv)
    _check_args(args)
    options = dict(
        repo_id=args.repo_id,
        license=args.license,
        base_models=args.base_models,
        datasets=args.datasets,
        max_shard_size=args.max_shard_size,
    )
    if args.dry_run:
        _dry_run(args, options)
    else:
        _upload(args, options)


if __name__ == "__main__":
    sys.exit(main())
