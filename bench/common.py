"""What every bench measures with and against: the peak-memory meter, the malloc policy it relies on, and the
baseline a user would otherwise pick (transformers' Llava with the same weights, tokenizer and chat template)."""

from __future__ import annotations

import ctypes
import gc
import os
import threading

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from modeling_allava import AllavaConfig, AllavaProcessor


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt() parameters, glibc's malloc.h


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
