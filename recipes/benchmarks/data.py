"""Open a benchmark's rows from the Hub (pinned or resolved revision) or from a local copy, and say which it was."""

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import datasets

from recipes.data import local_cache_dir


OpenSplit = Callable[[str | None, str], datasets.Dataset]


def _open_local(folder: Path, config: str | None, split: str) -> datasets.Dataset:
    """A `save_to_disk` folder (Dataset or DatasetDict) or a folder of data files; `folder/<config>` if present."""
    if config and (folder / config).is_dir():
        folder = folder / config
    if (folder / "dataset_dict.json").is_file():
        splits = datasets.load_from_disk(str(folder))
        if split not in splits:
            raise ValueError(f"{folder}: no split {split!r}; it has {sorted(splits)}.")
        return splits[split]
    if (folder / "state.json").is_file():
        return datasets.load_from_disk(str(folder))
    try:
        return datasets.load_dataset(str(folder), split=split, cache_dir=local_cache_dir(folder))
    except ValueError as error:
        wanted = f"config {config!r} (a sub-folder of that name) split {split!r}" if config else f"split {split!r}"
        raise ValueError(f"{folder}: cannot open {wanted} ({error}).") from error


def _undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """Image columns left as {"bytes", "path"}: `datasets` would decode them on access, before any check; our
    load_image decodes them after the shared pixel-budget check."""
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return dataset


def _hub_revision(dataset_id: str, revision: str | None) -> str | None:
    """The commit the Hub resolves `revision` to, so the score names the exact data; None when offline."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(dataset_id, revision=revision).sha
    except Exception:  # offline, gated or renamed: the score is still valid, only less pinned
        return revision


def load_rows(
    module: ModuleType, local_path: str | None, revision: str | None, limit: int | None
) -> tuple[datasets.Dataset, dict]:
    """The benchmark's rows (first `limit` only) and a provenance dict for results.json."""
    if local_path is not None:
        folder = Path(local_path)
        if not folder.is_dir():
            raise FileNotFoundError(f"--dataset-path {module.NAME}={local_path}: no such folder.")

        def open_split(config: str | None, split: str) -> datasets.Dataset:
            return _undecoded(_open_local(folder, config, split))

        provenance = {"dataset_id": str(folder.resolve()), "dataset_revision": None, "source": "local"}
    else:
        if module.DATASET_ID is None:
            raise ValueError(
                f"{module.NAME} has no public Hub copy we can name; pass --dataset-path {module.NAME}=FOLDER "
                "(schema in the module docstring of recipes/benchmarks/" + module.__name__.split(".")[-1] + ".py)."
            )

        resolved = _hub_revision(module.DATASET_ID, revision)

        def open_split(config: str | None, split: str) -> datasets.Dataset:
            # Load the commit we record, not whatever the branch points to a moment later.
            return _undecoded(datasets.load_dataset(module.DATASET_ID, config, split=split, revision=resolved))

        provenance = {"dataset_id": module.DATASET_ID, "dataset_revision": resolved, "source": "hub"}
    if hasattr(module, "load_rows"):
        rows = module.load_rows(open_split, limit)
    else:
        rows = open_split(module.DATASET_CONFIG, module.SPLIT)
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
    provenance.update(
        dataset_config=module.DATASET_CONFIG,
        split=module.SPLIT,
        dataset_fingerprint=getattr(rows, "_fingerprint", None),
    )
    return rows, provenance
