"""Merge a LoRA run into a normal ALLaVA checkpoint (merged weights, processor, remote code, auto_map).

    python recipes/merge_lora.py outputs/phi2-lora outputs/phi2-lora-merged [--base_model PATH_OR_ID]

The base model defaults to the adapter's `base_model_name_or_path` (recipes/sft.py records the stage-1 checkpoint
there, or the `base_model/` folder it saves when LoRA starts from freshly composed backbones); a relative path there
is tried from the working directory, then from the adapter folder. An ALLaVA base loads with the installed classes;
any other base that ships its own code needs `--trust-remote-code`. The result loads with
`AutoModelForImageTextToText.from_pretrained(output_dir, trust_remote_code=True)` and needs no peft.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recipes.remote_code import RemoteCodeRefusedError, add_trust_remote_code_argument, load_pretrained
from toolkit.cli import InputError, Parser, existing_folder, folder_or_repo_id, run


def resolve_base_model(adapter_dir: Path, recorded: str, what: str) -> str:
    """The base model an adapter names: a folder as given (absolute, or relative to the working directory), else
    the same relative path taken from the adapter folder, else a Hub id; a local path found in neither place is an
    error naming the field, not a failed Hub download."""
    if Path(recorded).expanduser().is_dir():
        return recorded
    beside = adapter_dir / recorded
    if not Path(recorded).is_absolute() and beside.is_dir():
        return str(beside)
    return folder_or_repo_id(recorded, what)


def merge(
    adapter_dir: str | Path, output_dir: str | Path, base_model: str | None = None, trust_remote_code: bool = False
) -> Path:
    """Load base + adapter, fold the LoRA deltas into the weights and save model and processor to `output_dir`."""
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    existing_folder(adapter_dir, "adapter_dir")
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise InputError(f"{adapter_dir}: no adapter_config.json (is this a LoRA run's output folder?)")
    if base_model:
        base_model = folder_or_repo_id(base_model, "--base_model")
    else:
        try:
            recorded = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (json.JSONDecodeError, AttributeError) as error:
            raise InputError(f"{config_file}: not a JSON object ({error})") from None
        if not recorded:
            raise InputError(f"{config_file}: no base_model_name_or_path; pass --base_model")
        base_model = resolve_base_model(adapter_dir, recorded, f"{config_file}: base_model_name_or_path")

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import modeling_allava  # noqa: F401  (registers the ALLaVA classes, so the merged model saves its remote code)

    model = load_pretrained(AutoModelForImageTextToText, base_model, trust_remote_code)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    # The processor the run trained with (saved next to the adapter), else the base model's.
    has_processor = (adapter_dir / "processor_config.json").is_file()
    processor_dir = str(adapter_dir) if has_processor else base_model
    processor = load_pretrained(AutoProcessor, processor_dir, trust_remote_code, checkpoint=base_model)
    merged.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(OSError, RemoteCodeRefusedError))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Merge a LoRA adapter into a standalone ALLaVA checkpoint (no peft needed to load it).",
        "python recipes/merge_lora.py outputs/phi2-lora outputs/phi2-lora-merged",
    )
    parser.add_argument("adapter_dir", help="a LoRA run's output_dir or checkpoint-N folder")
    parser.add_argument("output_dir", help="where to write the merged checkpoint")
    parser.add_argument("--base_model", default=None, help="override the adapter's base_model_name_or_path")
    add_trust_remote_code_argument(parser)
    args = parser.parse_args(argv)
    output = merge(args.adapter_dir, args.output_dir, args.base_model, args.trust_remote_code)
    print(f"merged checkpoint written to {output}")


if __name__ == "__main__":
    sys.exit(main())
