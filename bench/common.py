"""What every training bench measures with and against: the model shapes and their config, the step clock, the
token counter, the FLOP model and peak, the peak-memory meter with the malloc policy it relies on, and the baseline a
user would otherwise pick (transformers' Llava with the same weights, tokenizer and chat template)."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from dataclasses import dataclass

import torch
from datasets import Dataset, Features, Image, List, Value
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, TrainerCallback
from trl.trainer.utils import get_peak_flops

from dataset_scripts.schema import FEATURES
from modeling_allava import AllavaConfig, AllavaProcessor
from recipes.data import TRAINING_FEATURES
from recipes.tiny import shapes_world


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt() parameters, glibc's malloc.h


@dataclass(frozen=True)
class ModelShape:
    """A Phi text model and a CLIP vision tower (patch 14), random init: the benches' model sizes."""

    image_size: int = 112
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate: int = 512
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 1024
    partial_rotary_factor: float = 0.5
    vocab_size: int | None = None  # None: the tokenizer's size rounded up to 64

    @classmethod
    def phi_layout(
        cls, hidden: int, layers: int, vision_hidden: int, vision_layers: int, head_dim: int = 64, **fields
    ) -> ModelShape:
        """Phi-2's proportions at other sizes: 4x MLPs, 64-wide vision heads, 32 rotary dims per text head, 336 px."""
        return cls(
            **{
                "image_size": 336,
                "vision_hidden": vision_hidden,
                "vision_layers": vision_layers,
                "vision_heads": max(vision_hidden // 64, 1),
                "vision_intermediate": 4 * vision_hidden,
                "text_hidden": hidden,
                "text_layers": layers,
                "text_heads": hidden // head_dim,
                "text_intermediate": 4 * hidden,
                "partial_rotary_factor": min(32 / head_dim, 1.0),
                **fields,
            }
        )


# ALLaVA-Phi2: Phi-2 (32 x 2560, 80-wide heads, vocab 51,200) and CLIP ViT-L/14 at 336 px (576 image tokens).
PHI2_SHAPE = ModelShape.phi_layout(2560, 32, 1024, 24, head_dim=80, vocab_size=51200)


def phi_clip_config(tokenizer, shape: ModelShape) -> AllavaConfig:
    """The ALLaVA config of `shape`, with `tokenizer`'s special tokens."""
    return AllavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_hidden_layers": shape.vision_layers,
            "num_attention_heads": shape.vision_heads,
            "image_size": shape.image_size,
            "patch_size": 14,
        },
        text_config={
            "model_type": "phi",
            "hidden_size": shape.text_hidden,
            "intermediate_size": shape.text_intermediate,
            "num_hidden_layers": shape.text_layers,
            "num_attention_heads": shape.text_heads,
            "partial_rotary_factor": shape.partial_rotary_factor,
            "vocab_size": shape.vocab_size or (len(tokenizer) + 63) // 64 * 64,
            "max_position_embeddings": 4096,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "tie_word_embeddings": False,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )


def bench_rows(count: int, seed: int, image_size: int, max_words: int, min_words: int = 10) -> list[dict]:
    """Shapes-world rows with ALLaVA-like variety: a scene description and a question's answer grown to
    `min_words`-`max_words` words (~2.4 tokens each with the tiny tokenizer), ~15% text-only rows."""
    return shapes_world.dataset_rows(
        "detailed",
        count,
        seed,
        image_size=image_size,
        text_fraction=0.15,
        max_words=max_words,
        min_words=min_words,
        id_prefix="bench",
        teacher_model=None,
        prompt_version=None,
        prompt_hash=None,
        origin="bench",
    )


def training_datasets(rows: list[dict]) -> tuple[Dataset, Dataset]:
    """The rows as our collators read them (`id`, `messages`, undecoded `images`) and as TRL's vision collator reads
    them (images decoded, as `load_dataset` gives them); both pipelines decode each image once."""
    ours = Dataset.from_list(rows, features=FEATURES).select_columns(["id", "messages", "images"])
    ours = ours.cast(TRAINING_FEATURES)
    theirs = ours.cast(
        Features({"id": Value("string"), "messages": ours.features["messages"], "images": List(Image())})
    )
    return ours, theirs


class StepClock(TrainerCallback):
    """Training time: `wall` / `cpu` of the whole `train()` (CPU time is less disturbed by other jobs on a shared
    machine), and `seconds` from the end of step `warmup` to the end of the last step. The device is synchronised
    at every step end, so a step's time is its own and the GPU has nothing queued while the loop fetches data."""

    def __init__(self, device: torch.device | str, warmup: int = 0):
        self.device, self.warmup = torch.device(device), warmup
        self.start = self.end = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.end = time.perf_counter()
        if state.global_step == self.warmup:
            self.start = self.end

    def on_train_end(self, args, state, control, **kwargs):
        self.wall, self.cpu = time.perf_counter() - self.began[0], time.process_time() - self.began[1]

    @property
    def seconds(self) -> float:
        return self.end - self.start


class TokenCounter:
    """Forward pre-hook recording, per model call: non-pad tokens, all tokens, trained (label) tokens, the samples'
    lengths, the images. Counted where the model sees the batch, so every collator (ours, TRL's, packed) alike."""

    def __init__(self, model: torch.nn.Module, pad_token_id: int, config: AllavaConfig):
        self.pad_token_id, self.image_token_id = pad_token_id, config.image_token_index
        self.image_tokens = config.image_seq_length
        self.real, self.total, self.labels, self.samples, self.images = [], [], [], [], []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs) -> None:
        input_ids = kwargs["input_ids"]
        real = input_ids != self.pad_token_id
        self.real.append(int(real.sum()))
        self.total.append(input_ids.numel())
        self.labels.append(int((kwargs["labels"] != -100).sum()) if kwargs.get("labels") is not None else 0)
        self.images.append(int((input_ids == self.image_token_id).sum()) // self.image_tokens)
        if kwargs.get("attention_mask") is not None:
            self.samples.append(kwargs["attention_mask"].sum(1).tolist())
        else:  # packed: a sample starts where position_ids restart; the rows' unused ends are pad tokens
            starts = (kwargs["position_ids"] == 0).long().cumsum(1)
            self.samples.append(
                [
                    n
                    for row_starts, row_real in zip(starts, real)
                    for n in torch.bincount(row_starts[row_real]).tolist()
                    if n
                ]
            )

    def lengths(self, calls: slice) -> list[int]:
        """The sample lengths of these model calls."""
        return [n for call in self.samples[calls] for n in call]


def data_waits(trainer) -> list[float]:
    """Seconds each optimizer step's batch fetch took (with no dataloader workers: reading and collating the rows),
    filled in as the trainer trains."""
    waits: list[float] = []
    fetch = trainer.get_batch_samples

    def timed(*args, **kwargs):
        started = time.perf_counter()
        batches = fetch(*args, **kwargs)
        waits.append(time.perf_counter() - started)
        return batches

    trainer.get_batch_samples = timed
    return waits


def training_flops(config: AllavaConfig, lengths: list[int], images: int) -> float:
    """Useful training FLOPs of these samples: 6 x weights per trained token (LM, head, projector) + causal
    attention, and the frozen vision tower's forward (2 x weights per position + attention)."""
    text, vision = config.text_config, config.vision_config
    h, v = text.hidden_size, vision.hidden_size
    lm = text.num_hidden_layers * (4 * h * h + 2 * h * text.intermediate_size) + h * text.vocab_size
    attention = 6 * text.num_hidden_layers * h * sum(n * n for n in lengths)  # QK^T + AV over n^2/2 pairs, x3
    positions = config.image_seq_length + int(config.vision_feature_select_strategy == "default")  # + the CLS dropped
    tower = vision.num_hidden_layers * (
        2 * positions * (4 * v * v + 2 * v * vision.intermediate_size) + 4 * v * positions**2
    )
    projector = 6 * config.image_seq_length * (v * h + h * h)
    return 6 * lm * sum(lengths) + attention + images * (tower + projector)


def peak_flops(device: torch.device | str) -> float | None:
    """The card's dense bf16 peak (TRL's table), None on CPU or an unlisted card."""
    device = torch.device(device)
    return get_peak_flops(torch.cuda.get_device_name(device), "bfloat16") if device.type == "cuda" else None


def release_memory() -> None:
    """Collect garbage and make glibc give freed memory back to the OS, now and from now on.

    By default glibc keeps freed blocks for reuse (and raises its mmap threshold as large blocks are freed), so the
    resident set would still hold what an earlier run freed and a later run's peak would hide in it: whichever run
    comes second would look lighter. Blocks of 64 KiB and more are mmapped (unmapped on free) and the heap top is
    trimmed at once."""
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 0)
    libc.malloc_trim(0)


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory over the baseline taken when this is created. CUDA: allocated memory (`max_memory_allocated`,
    counted from creation on); CPU: resident set size, sampled every 2 ms while started, with `release_memory` first
    so that the resident set tracks what is in use."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._stop, self._thread = threading.Event(), None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            release_memory()
            self.base = self.peak = resident_bytes()

    def start(self) -> PeakMemory:
        if self.device.type != "cuda":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.base
        return self.peak - self.base

    @property
    def mib(self) -> float:
        return self.bytes / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, resident_bytes())


def baseline_model(config: AllavaConfig, dtype: torch.dtype = torch.float32) -> LlavaForConditionalGeneration:
    """transformers' own Llava with every setting it shares with `config` (same vision and text models, so the same
    weights load into it); vision frozen, projector + LM trained, as in ALLaVA. Built on the current torch device."""
    llava_config = LlavaConfig(**{k: v for k, v in config.to_dict().items() if k in LlavaConfig.__dataclass_fields__})
    llava_config._attn_implementation = config._attn_implementation
    model = LlavaForConditionalGeneration._from_config(llava_config, dtype=dtype)
    model.model.vision_tower.requires_grad_(False)
    return model


def baseline_processor(processor: AllavaProcessor) -> LlavaProcessor:
    """What a user of transformers' Llava builds: LlavaProcessor with `processor`'s image processor, tokenizer and
    chat template, and the fix every Llava + CLIP user needs: the CLS token counted, or the image-token count is one
    short."""
    return LlavaProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=processor.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=processor.chat_template,
    )
