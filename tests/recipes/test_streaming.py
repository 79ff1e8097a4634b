"""A streamed mixture: shared out per process without overlap, checked row by row, and resumed where it stopped."""

import json
import shutil
from collections import Counter
from itertools import islice
from types import SimpleNamespace

import datasets
import pytest
from datasets import Dataset

from dataset_scripts.schema import FEATURES
from modeling_allava import AllavaProcessor
from recipes import sft
from recipes.collator import AllavaCollator
from recipes.data import TRAINING_FEATURES, parse_mixture
from recipes.packing import PackedAllavaCollator
from recipes.streaming import (
    STREAM_KEY,
    EncodedStream,
    StreamBatches,
    first_row,
    load_position,
    open_entry,
    refuse_unstreamable,
    save_position,
    stream_mixture,
    trainer_sample,
)
from tests.recipes.conftest import (
    REPO,
    mixture_args,
    quick_args,
    run_script,
    run_sft,
    shapes_rows,
    write_dataset_folder,
)
from tests.recipes.sharded import free_port
from toolkit.cli import InputError


@pytest.fixture(autouse=True)
def no_pause_between_passes(monkeypatch):
    """`datasets` sleeps 5 s whenever an interleaved parquet stream ends (a guard against a pyarrow crash when its
    reader threads shut down, apache/arrow#45214); these tiny mixtures end a pass every few steps."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def checker(tiny_backbones) -> AllavaCollator:
    vision, text = tiny_backbones
    return AllavaCollator(AllavaProcessor.from_backbones(str(vision), str(text)), max_length=256)


@pytest.fixture(scope="module")
def data_with_a_bad_row(tmp_path_factory):
    """12 captions and 8 text rows, of which one has no assistant turn (nothing to train on)."""
    text = shapes_rows("text", 8, seed=3)
    text[5]["conversations"], text[5]["messages"] = text[5]["conversations"][:1], text[5]["messages"][:1]
    folder = tmp_path_factory.mktemp("stream-data")
    return write_dataset_folder(folder, {"caption_shapes": shapes_rows("caption", 12, seed=1), "text": text}), text[5]


def one_pass(stream: EncodedStream, rows: int) -> list[str]:
    return [item.row.row_id for item in islice(stream, rows)]


def test_processes_share_each_pass_without_overlap(shapes_dataset, checker):
    mixture = [
        {"path": str(shapes_dataset), "name": "caption_shapes"},
        {"path": str(shapes_dataset), "name": "text", "epochs": 2},
    ]
    expected = Counter({f"caption_shapes_1_{i}": 1 for i in range(48)} | {f"text_shapes_3_{i}": 2 for i in range(24)})
    stream = stream_mixture(mixture, seed=0, shuffle_buffer=50)
    passes = [one_pass(EncodedStream(stream, checker, rank, 2), 96) for rank in (0, 1)]  # two passes of 48 each
    for first, last in ((0, 48), (48, 96)):  # in every pass: 96 rows, each once per epoch, on one process only
        shares = [rows[first:last] for rows in passes]
        assert Counter(shares[0]) + Counter(shares[1]) == expected
        assert not {row for row in shares[0] if row.startswith("caption")} & set(shares[1])  # captions: 1 epoch
    assert passes[0][:48] != passes[0][48:]  # each pass reshuffled
    assert passes[0][:30] == one_pass(EncodedStream(stream, checker, 0, 2), 30)  # the same order on every run
    # Rows of both entries are mixed from the start, not one entry after the other.
    assert {row_id.split("_")[0] for row_id in passes[0][:12]} == {"caption", "text"}


def test_a_one_file_entry_is_shuffled_as_datasets_would(shapes_dataset):
    """One file read at a time: over a single file that is the very same order as datasets' defaults."""
    entry = {"path": str(shapes_dataset), "name": "caption_shapes"}
    ours = [row["id"] for row in stream_mixture([entry], seed=4, shuffle_buffer=10)]
    stream = open_entry(parse_mixture([entry])[0]).shuffle(seed=4, buffer_size=10)  # the entry's copy, then the mix
    plain = [row["id"] for row in stream.shuffle(seed=4, buffer_size=10)]
    assert ours == plain and len(ours) == 48 and ours != sorted(ours)


def test_a_many_file_entry_is_read_one_file_at_a_time(tmp_path):
    """Files go into the shuffle buffer one after another (in a seeded order, another each pass), not 10 at once
    through datasets' threaded shard interleaving (63 s to the first row and 3.7 GB at 10^6 rows)."""
    rows = shapes_rows("text", 30, seed=5)
    folder = tmp_path / "three-files"
    folder.mkdir()
    for n in range(3):
        part = Dataset.from_list(rows[10 * n : 10 * n + 10], features=FEATURES)
        part.to_parquet(folder / f"train-0000{n}-of-00003.parquet")
    file_of = {row["id"]: n // 10 for n, row in enumerate(rows)}
    stream = stream_mixture([{"path": str(folder)}], seed=0, shuffle_buffer=2)
    passes = []
    for epoch in range(3):
        stream.set_epoch(epoch)
        passes.append([file_of[row["id"]] for row in stream])
    for files in passes:
        assert sorted(files) == sorted(file_of.values())  # every row once a pass
        assert sum(a != b for a, b in zip(files, files[1:])) <= 8  # a file's rows come together (interleaved: ~20)
    assert len({tuple(dict.fromkeys(files)) for files in passes}) > 1  # the file order changes between passes


def test_the_trainer_gets_one_unshuffled_row(shapes_dataset):
    """TRL's SFTTrainer reads one row of its train_dataset; with a stream that row costs no shuffle buffer."""
    mixture = [{"path": str(shapes_dataset), "name": "text"}, {"path": str(shapes_dataset), "name": "caption_shapes"}]
    sample = trainer_sample(mixture)
    first = first_row(open_entry(parse_mixture(mixture)[0]))
    assert list(sample) == [first] and set(first) == {"id", "messages", "images"}
    assert sample.n_shards == 1 and sample.features == TRAINING_FEATURES  # held in memory: no parquet scan to leave


def test_close_ends_the_pass_being_read(shapes_dataset, checker, monkeypatch):
    """Training stops mid-pass; `close` ends that pass's read (its parquet scan) while Python is whole, not at exit."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    stream = EncodedStream(stream_mixture([{"path": str(shapes_dataset), "name": "text"}], 0, 4), checker, 0, 1)
    reading = iter(stream)
    next(reading)
    passes = list(stream._passes)
    stream.close()
    assert len(passes) == 1 and passes[0].gi_frame is None  # a closed generator has no frame


def test_take_fraction_is_a_fixed_share_on_a_stream(shapes_dataset, checker):
    mixture = [{"path": str(shapes_dataset), "name": "caption_shapes", "take_fraction": 0.5}]
    first = one_pass(EncodedStream(stream_mixture(mixture, 0, 10), checker, 0, 1), 200)
    kept = set(first[: len(set(first))])
    assert 12 <= len(kept) <= 36  # about half of 48, decided per row by a seeded hash
    assert set(first) == kept and len(first) == 200  # later passes repeat exactly that share
    again = set(one_pass(EncodedStream(stream_mixture(mixture, 0, 10), checker, 0, 1), 60))
    assert again == kept
    assert set(one_pass(EncodedStream(stream_mixture(mixture, 1, 10), checker, 0, 1), 60)) != kept  # another seed


def test_bad_streamed_rows_stop_the_run_or_are_dropped_and_counted(data_with_a_bad_row, checker):
    folder, bad = data_with_a_bad_row
    stream = stream_mixture([{"path": str(folder), "name": "text"}], seed=0, shuffle_buffer=4)
    with pytest.raises(InputError, match=rf"row '{bad['id']}': no assistant turn.*--drop_bad_rows true"):
        one_pass(EncodedStream(stream, checker, 0, 1), 8)
    dropping = EncodedStream(stream, checker, 0, 1, drop_bad_rows=True)
    ids = one_pass(dropping, 14)
    assert bad["id"] not in ids and len(set(ids)) == 7 and dropping.dropped == 2  # two passes read it


def test_stream_batches_are_packed_and_carry_their_position(shapes_dataset, checker):
    stream = stream_mixture([{"path": str(shapes_dataset), "name": "caption_shapes"}], seed=0, shuffle_buffer=8)
    items = list(islice(EncodedStream(stream, checker, 0, 1), 5))
    packed = PackedAllavaCollator(checker.processor, max_length=256)
    batch = StreamBatches(packed)(items)
    assert batch[STREAM_KEY] == {"rows_read": 5, "dropped": 0, "ids": [item.row.row_id for item in items]}
    assert batch["pixel_values"].shape[0] == 5 and "attention_mask" not in batch  # packed: positions, no mask
    starts = [(row[1:] == 0).nonzero().flatten().tolist() for row in batch["position_ids"]]
    assert sum(len(row) + 1 for row in starts) >= 5  # a restart per sample
    assert int((batch["labels"] != -100).sum()) == sum(
        sum(label != -100 for label in item.row.labels[1:]) for item in items
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_steps": -1}, "set max_steps"),
        ({"train_sampling_strategy": "group_by_length"}, "sorts the whole dataset"),
        ({"dataloader_num_workers": 2}, "dataloader_num_workers must be 0"),
    ],
)
def test_what_a_stream_cannot_do_is_refused_in_one_line(settings, message):
    args = {"max_steps": 10, "train_sampling_strategy": "random", "dataloader_num_workers": 0, **settings}
    with pytest.raises(InputError, match=message):
        refuse_unstreamable(SimpleNamespace(**args))


def streaming_args(backbones, folder, output_dir, steps, **overrides) -> list[str]:
    vision, text = backbones
    settings = {
        "save_steps": 3,
        "save_total_limit": 5,
        "per_device_train_batch_size": 3,
        "learning_rate": 1e-3,
        "seed": 0,
        **overrides,
    }
    return (
        ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(folder, "caption_shapes", "text")
        + ["--streaming", "true", "--shuffle_buffer", "6", "--pack_batches", "true", "--drop_bad_rows", "true"]
        + quick_args(output_dir, steps, **settings)
    )


def test_a_resumed_stream_continues_after_the_rows_already_trained(
    tiny_backbones, data_with_a_bad_row, tmp_path, monkeypatch
):
    folder, bad = data_with_a_bad_row
    trained: list[tuple[int, list[str]]] = []

    def record(self, position):
        trained.append((self.state.global_step + 1, position["ids"]))
        self.stream_position = position

    monkeypatch.setattr(sft.AllavaSFTTrainer, "note_stream_batch", record)
    run = tmp_path / "run"
    run_sft(streaming_args(tiny_backbones, folder, run, 12))  # 36 rows: a pass (19 good rows), then most of another
    dropped = json.loads((run / "training_summary.json").read_text())["bad_rows_dropped"]
    uninterrupted = dict(trained)
    assert sorted(uninterrupted) == list(range(1, 13))
    rows = [row for step in range(1, 13) for row in uninterrupted[step]]
    first_pass, second_pass = rows[:19], rows[19:]  # 19 good rows a pass (20, one bad)
    assert len(set(first_pass)) == 19 and len(set(second_pass)) == 17 and set(second_pass) <= set(first_pass)
    assert bad["id"] not in rows and second_pass != first_pass[:17]  # each pass reshuffled, none lost or repeated
    assert (run / "checkpoint-6/stream/rank-0.json").is_file()

    # Resume from step 6 in a new trainer: steps 7-12 train exactly the rows they trained before.
    for leftover in ("checkpoint-9", "checkpoint-12", "model.safetensors"):
        shutil.rmtree(run / leftover) if (run / leftover).is_dir() else (run / leftover).unlink()
    trained.clear()
    run_sft(streaming_args(tiny_backbones, folder, run, 12) + ["--resume_from_checkpoint", str(run / "checkpoint-6")])
    assert dict(trained) == {step: uninterrupted[step] for step in range(7, 13)}
    # The bad row, read once or twice in these 36 rows, counted as in the uninterrupted run (carried over the resume).
    assert dropped >= 1 and json.loads((run / "training_summary.json").read_text())["bad_rows_dropped"] == dropped


def trained_rows(output_dir, rank: int) -> dict[int, list[str]]:
    lines = (output_dir / f"trained-rank{rank}.jsonl").read_text().splitlines()
    (output_dir / f"trained-rank{rank}.jsonl").unlink()
    return {entry["step"]: entry["ids"] for entry in map(json.loads, lines)}


@pytest.mark.slow
def test_two_processes_train_disjoint_shares_and_resume_them(tiny_backbones, shapes_dataset, tmp_path):
    """accelerate launch, 2 CPU processes (DDP over gloo): each row of the 72-row mixture trained by exactly one
    process in 6 steps of 2 x 6 rows, and a resume from step 3 trains the same rows again in steps 4-6."""
    output_dir = tmp_path / "run"
    launch = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/accelerate_configs/ddp.yaml")]
    launch += [
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        str(REPO / "tests/recipes/stream_probe.py"),
    ]
    args = streaming_args(tiny_backbones, shapes_dataset, output_dir, 6, per_device_train_batch_size=6)
    args += ["--use_cpu", "true", "--trainable", "allava"]
    run_script(launch + args, cwd=tmp_path, timeout=400)
    shares = [trained_rows(output_dir, rank) for rank in (0, 1)]
    rows = [[row for step in sorted(share) for row in share[step]] for share in shares]
    assert sorted(shares[0]) == sorted(shares[1]) == list(range(1, 7))
    assert not set(rows[0]) & set(rows[1]) and len(set(rows[0])) == len(set(rows[1])) == 36
    assert set(rows[0]) | set(rows[1]) == {f"caption_shapes_1_{i}" for i in range(48)} | {
        f"text_shapes_3_{i}" for i in range(24)
    }
    assert (output_dir / "checkpoint-3/stream/rank-1.json").is_file()

    for leftover in ("checkpoint-6", "model.safetensors"):
        path = output_dir / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed_args = args + ["--resume_from_checkpoint", str(output_dir / "checkpoint-3")]
    run_script(
        launch[:-3] + ["--main_process_port", str(free_port()), launch[-1]] + resumed_args, cwd=tmp_path, timeout=400
    )
    for rank, share in enumerate(shares):
        assert trained_rows(output_dir, rank) == {step: share[step] for step in (4, 5, 6)}


def test_a_checkpoint_resumes_only_with_its_stream_positions(tmp_path):
    save_position(tmp_path, rank=1, world_size=2, rows_read=42, dropped=3)
    assert load_position(tmp_path, rank=1, world_size=2) == (42, 3)
    with pytest.raises(InputError, match="saved by 2 processes, resumed with 4"):
        load_position(tmp_path, rank=1, world_size=4)
    with pytest.raises(InputError, match="no stream position for process 0"):
        load_position(tmp_path, rank=0, world_size=2)  # e.g. a checkpoint of a run that did not stream


@pytest.mark.parametrize("pack", ["false", "true"])
def test_token_budget_batches_on_a_stream(tiny_backbones, shapes_dataset, checker, tmp_path, monkeypatch, pack):
    """--max_tokens_per_batch: batches of the stream's rows in order, each within the budget and full."""
    batches: list[tuple[list[str], int]] = []
    original_step = sft.AllavaSFTTrainer.training_step

    def record(self, model, inputs, *args, **kwargs):
        batches.append((inputs[STREAM_KEY]["ids"], inputs["input_ids"].numel()))
        return original_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(sft.AllavaSFTTrainer, "training_step", record)
    args = streaming_args(tiny_backbones, shapes_dataset, tmp_path / "run", 4, pack_batches=pack)
    run_sft(args + ["--max_tokens_per_batch", "600"])
    mixture = [{"path": str(shapes_dataset), "name": name} for name in ("caption_shapes", "text")]
    expected = list(islice(EncodedStream(stream_mixture(mixture, 0, 6), checker, 0, 1), 72))
    length = {item.row.row_id: len(item.row) for item in expected}
    rows = [row for ids, _ in batches for row in ids]
    assert len(batches) == 4 and rows == [item.row.row_id for item in expected[: len(rows)]]  # in order, none lost

    def cost(ids):
        lengths = [length[row] for row in ids]
        return sum(lengths) if pack == "true" else len(ids) * max(lengths)

    position = 0
    for ids, tensor_tokens in batches:
        position += len(ids)
        assert cost(ids) <= 600 and (pack == "true" or tensor_tokens == cost(ids))
        assert cost([*ids, expected[position].row.row_id]) > 600  # full: closed only when the next row did not fit
