"""Sharded engines (FSDP, DeepSpeed ZeRO) for recipes/sft.py, on GPUs and on CPU-only machines alike.

accelerate (1.15) only turns `distributed_type: FSDP` on for GPU-like devices: on CPU its state becomes MULTI_CPU and
the FSDP plugin is dropped, so `accelerate launch --config_file fsdp.yaml ... --use_cpu true` would silently train
plain DDP. torch's FSDP2 (`fully_shard`) runs on CPU over gloo, so the launcher's FSDP plugin is put back here; the
CPU tests then exercise the same wrapping, sharded optimiser and full-state-dict save as the GPU runs.

DeepSpeed has a CPU accelerator (gloo), but accelerate drops it the same way under `--use_cpu true`; it runs when
launched without that flag and with `--ddp_backend gloo`, so that mistake is refused with that advice.
"""

from __future__ import annotations

import logging
import os

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from toolkit.cli import InputError


logger = logging.getLogger("allava.distributed")


def fsdp_requested() -> bool:
    """`accelerate launch` with an FSDP config exports ACCELERATE_USE_FSDP=true to every process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def restore_fsdp_on_cpu(state: AcceleratorState) -> bool:
    """Switch a CPU (gloo) multi-process state back to the FSDP the launcher asked for; True when it did.

    The plugin is built from the launcher's FSDP_* environment, as accelerate builds it on GPUs. A DeepSpeed launch
    that `--use_cpu` turned into DDP is refused.
    """
    if state.distributed_type != DistributedType.MULTI_CPU:
        return False
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise InputError(
            "DeepSpeed on CPU: launch without --use_cpu and with --ddp_backend gloo (with --use_cpu accelerate "
            "would silently run DDP instead)"
        )
    if not fsdp_requested():
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise InputError("FSDP on CPU runs with fsdp_version: 2 (fully_shard) only: set it in the accelerate config")
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    logger.info("FSDP2 on CPU over %s (accelerate alone would run DDP here)", state.backend)
    return True
