"""The executor interface and the placement steps every executor shares."""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from accelerate.utils import recursively_apply, send_to_device

from inference.adapters.base import LoadedModel

if TYPE_CHECKING:
    from inference.models import ModelRef
    from inference.planning.types import Plan

# Methods through which generation code calls a codec: hooks on ``forward`` alone would miss
# ``codec.decode(...)``, which is how transformers' CSM and VibeVoice generation call their codecs.
ENTRY_METHODS = ("forward", "encode", "decode")


class Keeper(Protocol):
    """Something an executor keeps alive while the model runs (hooks, streams, engines, folders).

    The worker closes every keeper when it unloads the model, so pinned memory, hooks and temporary
    files end then rather than whenever garbage collection gets to them. ``close`` may run twice.
    """

    def close(self) -> None: ...


@contextlib.contextmanager
def closed_on_failure(keep: list[Keeper]) -> Iterator[list[Keeper]]:
    """Yield ``keep`` for a placement (or a load) to fill; if it fails part-way, close what it gathered
    before the error leaves.

    A load that runs out of memory half-way must not leave host memory page-locked or hooks behind: the
    worker steps down and loads again in the same process. The placement's own error is the one raised.
    """
    try:
        yield keep
    except BaseException:
        for held in keep:
            with contextlib.suppress(Exception):
                held.close()
        raise


class Hooks:
    """Module hooks that stay registered while the model runs, removed on ``close``."""

    def __init__(self, handles: list[torch.utils.hooks.RemovableHandle]):
        self.handles = handles

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


@dataclass
class Placed:
    """A model carried out under a plan, and whatever must stay alive while it runs."""

    loaded: LoadedModel
    keep: list[Keeper] = field(default_factory=list)


class Executor(ABC):
    """Places a CPU-loaded model where a plan says and moves offloaded weights while it runs."""

    name: str

    def load(self, ref: ModelRef, plan: Plan, path: Path) -> Placed:
        """Load through the adapter into host memory, then place."""
        return self.place(self.load_on_cpu(ref, plan, path), plan)

    def load_on_cpu(self, ref: ModelRef, plan: Plan, path: Path, elsewhere: dict[str, str] | None = None
                    ) -> LoadedModel:
        """The model loaded by its adapter into host memory in the plan's dtype.

        Safetensors are memory-mapped, so this costs page cache, not RAM, when the checkpoint already
        has the plan's dtype. The map names the modules that compute on the CPU, so an adapter that keeps
        such a module in another dtype (Pocket's codec in fp32) does so; ``elsewhere`` adds modules placed
        otherwise (``"meta"``: not loaded at all).
        """
        device_map = {"": "cpu", **dict.fromkeys(plan.cpu_islands, "cpu"), **(elsewhere or {})}
        return ref.adapter.load(path, getattr(torch, plan.dtype), torch.device(plan.device), device_map)

    @abstractmethod
    def place(self, loaded: LoadedModel, plan: Plan) -> Placed:
        """Move ``loaded.model`` (on the CPU) as ``plan`` says; the result computes on ``plan.device``."""


def computes_upcast(loaded: LoadedModel, plan: Plan, place) -> list[Keeper]:
    """Run ``place()`` (the executor's own placement) for a plan whose weights are stored in a narrower
    dtype than they compute in, upcasting per module (``upcast``); returns the hooks to keep.

    Plans with one dtype just run ``place()``.
    """
    if not plan.compute_dtype or plan.compute_dtype == plan.dtype:
        return place()
    from inference.executors import upcast

    storage, compute = getattr(torch, plan.dtype), getattr(torch, plan.compute_dtype)
    upcast.settle_small(loaded.model, storage, compute, plan.cpu_islands)
    with closed_on_failure(place()) as keep:
        loaded.dtype = compute  # adapters bring inputs to the compute dtype
        swapped = plan.streamed_layers if plan.from_disk else ()  # outside forward: the checkpoint's own dtype
        keep.append(Hooks(upcast.upcast_per_layer(loaded.model, compute, plan.cpu_islands, swapped)))
        return keep


def under(path: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    """Whether module path ``path`` is one of ``prefixes`` or inside one."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def move_except(model: torch.nn.Module, device: torch.device, keep: tuple[str, ...]) -> None:
    """Move every parameter and buffer to ``device`` except those under the module paths in ``keep``.

    Tensors are moved in place (``.data``), so tied weights stay tied and references held by generation
    code stay valid.
    """
    for name, module in model.named_modules():
        if under(name, keep):
            continue
        for param in module.parameters(recurse=False):
            if param.device != device:
                param.data = param.data.to(device)
        for buf_name, buf in list(module.named_buffers(recurse=False)):
            if buf is not None and buf.device != device:
                module._buffers[buf_name] = buf.to(device)


def place_resident_part(model: torch.nn.Module, plan: Plan, device: torch.device,
                        offloaded: tuple[str, ...] = ()) -> list[Keeper]:
    """What every executor but accelerate's does first: each module on ``device`` except ``offloaded``
    (the executor's own business), those the plan computes on the CPU (set up to run there) and the
    lookup tables it keeps in host memory (hooked). Returns the keepers of those hooks."""
    move_except(model, device, plan.cpu_islands + offloaded + plan.lookups_on_cpu)
    on_cpu_island(model, plan.cpu_islands)
    return lookups_on_cpu(model, plan.lookups_on_cpu, device)


def on_cpu_island(model: torch.nn.Module, paths: tuple[str, ...]) -> None:
    """Make the modules at ``paths`` compute on the CPU in fp32 inside a model that computes on a GPU.

    fp32 because CPUs convolve in half precision far slower, and the adapters' measured CPU speed is
    fp32's. Their entry methods take any input to the CPU as fp32; results stay there, as they would
    from a codec the adapter itself loaded on the CPU (adapters move codec inputs to the codec's
    device and its outputs to where they are needed). An island is moved behind its siblings: generation
    code places a model's inputs by the model's ``.device``, its first parameter's (VibeVoice hands the
    acoustic decoder its latents on ``audio_tower.device``, whose encoder may be an island).
    """
    for path in paths:
        module = model.get_submodule(path)
        module.to(device="cpu", dtype=torch.float32)
        for method in ENTRY_METHODS:
            original = getattr(module, method, None)
            if callable(original):
                setattr(module, method, _on_cpu(original))
        parent, _, name = path.rpartition(".")
        siblings = model.get_submodule(parent)._modules
        siblings[name] = siblings.pop(name)


def lookups_on_cpu(model: torch.nn.Module, paths: tuple[str, ...], device: torch.device) -> list[Keeper]:
    """Embedding tables at ``paths`` stay in host memory; the rows they look up go to ``device``.

    Index tensors are moved to the CPU before the lookup and the result to the compute device after it,
    so callers inside the model see an ordinary embedding on the compute device. Returns the hooks as
    one keeper (none when ``paths`` is empty).
    """
    handles = []
    for path in paths:
        module = model.get_submodule(path)
        module.to("cpu")
        handles.append(module.register_forward_pre_hook(
            lambda m, args, kwargs: (send_to_device(args, "cpu"), send_to_device(kwargs, "cpu")),
            with_kwargs=True))
        handles.append(module.register_forward_hook(lambda m, args, out: send_to_device(out, device)))
    return [Hooks(handles)] if handles else []


def _on_cpu(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        args, kwargs = _to_cpu((args, kwargs))
        return fn(*args, **kwargs)

    return call


def _to_cpu(value):
    """Tensors anywhere in ``value`` (tuples, lists, dicts) on the CPU, floating ones as fp32."""
    return recursively_apply(_tensor_to_cpu, value)


def _tensor_to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to("cpu", torch.float32) if tensor.is_floating_point() else tensor.to("cpu")
