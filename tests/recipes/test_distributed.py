"""recipes/distributed.py: an FSDP or DeepSpeed launch on CPU trains with that engine, never silently with DDP."""

from types import SimpleNamespace

import pytest
from accelerate.state import PartialState
from accelerate.utils import DistributedType

from recipes.distributed import restore_fsdp_on_cpu


@pytest.fixture
def cpu_state(monkeypatch):
    """What accelerate makes of a multi-process `--use_cpu true` launch, whatever the config asked for."""
    monkeypatch.setattr(PartialState, "_shared_state", {"distributed_type": DistributedType.MULTI_CPU})
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "FSDP_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, backend="gloo")


def test_an_fsdp2_launch_on_cpu_gets_its_fsdp_plugin_back(cpu_state, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    assert restore_fsdp_on_cpu(cpu_state)
    assert cpu_state.distributed_type == DistributedType.FSDP == PartialState._shared_state["distributed_type"]
    assert cpu_state.fsdp_plugin.fsdp_version == 2


def test_a_ddp_launch_on_cpu_stays_ddp(cpu_state):
    assert not restore_fsdp_on_cpu(cpu_state)
    assert cpu_state.distributed_type == DistributedType.MULTI_CPU and not hasattr(cpu_state, "fsdp_plugin")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "--ddp_backend gloo"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "fsdp_version: 2"),
    ],
)
def test_engines_cpu_cannot_run_are_refused(cpu_state, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        restore_fsdp_on_cpu(cpu_state)
