"""Open a benchmark's rows from the Hub (pinned or resolved revision) or from a local copy, and say which it was."""

from pathlib import Path

import datasets

from recipes.dataset_cache import local_cache_dir

from .benchmark import Benchmark


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
    benchmark: Benchmark, local_path: str | None, revision: str | None, limit: int | None
) -> tuple[datasets.Dataset, dict]:
    """The benchmark's rows (first `limit` only) and a provenance dict for results.json."""
    if local_path is not None:
        folder = Path(local_path)
        if not folder.is_dir():
            raise FileNotFoundError(f"--dataset-path {benchmark.name}={local_path}: no such folder.")

        def open_split(config: str | None, split: str) -> datasets.Dataset:
            return _undecoded(_open_local(folder, config, split))

        provenance = {"dataset_id": str(folder.resolve()), "dataset_revision": None, "source": "local"}
    else:
        if benchmark.dataset_id is None:
            raise ValueError(
                f"{benchmark.name} has no public Hub copy we can name; pass --dataset-path {benchmark.name}=FOLDER "
                f"(schema in the module docstring of recipes/benchmarks/{Path(benchmark.module_file).name})."
            )

        resolved = _hub_revision(benchmark.dataset_id, revision)

        def open_split(config: str | None, split: str) -> datasets.Dataset:
            # Load the commit we record, not whatever the branch points to a moment later.
            return _undecoded(datasets.load_dataset(benchmark.dataset_id, config, split=split, revision=resolved))

        provenance = {"dataset_id": benchmark.dataset_id, "dataset_revision": resolved, "source": "hub"}
    if benchmark.load_rows is not None:
        rows = benchmark.load_rows(open_split, limit)
    else:
        rows = open_split(benchmark.dataset_config, benchmark.split)
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
    provenance.update(
        dataset_config=benchmark.dataset_config,
        split=benchmark.split,
        dataset_fingerprint=getattr(rows, "_fingerprint", None),
    )
    return rows, provenance
