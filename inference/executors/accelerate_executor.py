"""accelerate's device-map hooks: the baseline the other executors are measured against, and the fallback.

Modules the plan keeps in host memory ("cpu") or on disk ("disk") get accelerate's
``AlignDevicesHook``, which copies their weights to the GPU for each forward, synchronously from
pageable memory (8-13x slower than the streamed executor: docs/measurements.md,
benchmarks/results/offload-h100-80gb-hbm3.md). It needs no CUDA toolkit and runs on every OS, which
is why the planner falls back to it when DeepSpeed cannot run.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

import torch

from inference.adapters.base import LoadedModel
from inference.executors.base import Executor, Keeper, Placed, on_cpu_island, under


class AccelerateExecutor(Executor):
    name = "accelerate"

    def place(self, loaded: LoadedModel, plan) -> Placed:
        from accelerate import dispatch_model

        device = torch.device(plan.device)
        model = loaded.model
        device_map = {k: v for k, v in plan.device_map.items() if not under(k, plan.cpu_islands)}
        keep: list[Keeper] = []
        offload_dir = None
        if "disk" in device_map.values():
            folder = _OffloadFolder()
            keep.append(folder)
            offload_dir = folder.path
        with _detached(model, plan.cpu_islands):
            if set(device_map.values()) == {plan.device}:
                model.to(device)
            else:  # main_device as a string: accelerate compares it with "cpu"
                dispatch_model(model, device_map=device_map, main_device=plan.device, offload_dir=offload_dir)
                _place_loose_tensors(model, device_map)
        on_cpu_island(model, plan.cpu_islands)
        loaded.device = device
        return Placed(loaded, keep)


class _OffloadFolder:
    """The temporary folder accelerate writes disk-offloaded weights to, removed when the model is unloaded."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="vesper-offload-")
        self.path = self._folder.name

    def close(self) -> None:
        self._folder.cleanup()


@contextmanager
def _detached(model: torch.nn.Module, paths: tuple[str, ...]):
    """Hide the modules that compute on the CPU from accelerate, whose "cpu" means "offloaded to the CPU,
    computed on the GPU": a codec read through ``codec.device`` would then report the meta device."""
    hidden = []
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        hidden.append((parent, name, parent._modules.pop(name)))
    try:
        yield
    finally:
        for parent, name, module in hidden:
            parent._modules[name] = module


EXECUTOR = AccelerateExecutor()


def _place_loose_tensors(model: torch.nn.Module, device_map: dict[str, str]) -> None:
    """Tensors mapped by name rather than by module (a model's own scalars and statistics).

    accelerate hooks modules only, so such a tensor would stay where loading left it (the CPU) while
    generation reads it next to GPU tensors.
    """
    modules = dict(model.named_modules())
    for key, device in device_map.items():
        if key in modules or device in ("cpu", "disk"):
            continue
        parent, _, name = key.rpartition(".")
        owner = model.get_submodule(parent)
        if name in owner._parameters and owner._parameters[name] is not None:
            owner._parameters[name].data = owner._parameters[name].data.to(device)
        elif name in owner._buffers and owner._buffers[name] is not None:
            owner._buffers[name] = owner._buffers[name].to(device)
