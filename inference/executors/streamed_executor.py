"""Backbone layers that live in pinned host memory and are copied into the GPU one layer ahead.

Why not diffusers' group offloading (``apply_group_offloading(..., use_stream=True,
record_stream=True)``), which reaches the PCIe bound when it owns a whole decoder? Applied to part
of a model it was 1.8x off the bound and changed the output (docs/measurements.md,
``benchmarks/group_offload.py``), and its source (diffusers 0.42.1, ``hooks/group_offloading.py``)
says why: prefetching is armed by a ``LazyPrefetchGroupOffloadingHook`` on the module it is applied
to, which records the execution order during that module's first ``forward``. A ``ModuleList``
holding the offloaded layers is never called, so the order is never recorded, every group keeps
``onload_self=True``, and each layer is copied only when it is reached (no overlap: the 1.8x).
Worse, a self-onloading group issues its copy on the side stream and the compute stream never waits
for it (``should_synchronize`` is only true for prefetched groups), so a layer can read its weights
before they arrive: the changed output. Applying it to the whole decoder instead would stream every
layer, including those that fit. Its prefetched path also blocks the host on
``stream.synchronize()`` before every layer.

This executor keeps the offloaded layers of a plan in one ring, in execution order, and prefetches
the next layer of the ring (wrapping to the first for the next decode step) while the current one
computes. Each layer's tensors are packed into one pinned host buffer (one copy per layer instead
of one per tensor) and copied into one of two fixed GPU slots, so VRAM for streaming is exactly two
slots however far the host runs ahead. Ordering is by CUDA events, never by blocking the host: the
compute stream waits for a slot's copy, and the copy stream waits for the compute that last read
that slot before overwriting it. That event is what ``record_stream`` gives a freed tensor; with
fixed slots there is no free to guard, and the caching allocator's ``record_stream`` path cannot
bound memory when the host queues copies faster than the GPU computes. Outside a layer's
``forward`` its parameters point at their host copies, so nothing can read a slot another layer
has overwritten.

From disk (a plan whose ``offload["home"]`` is ``"disk"``: the layers fit neither the GPU nor the RAM)
the ring is the same, but a layer has no host copy: the model is loaded with those layers on the meta
device, and their tensors are bound to the checkpoint's own safetensors, memory-mapped
(``executors.mapped``), so no layer is ever held in Vesper's RAM and nothing is copied into an offload
folder. Each copy reads the layer from the mapping into the slot's pinned staging buffer (the OS page
cache keeps what RAM allows; the rest is read from the disk again), converting a checkpoint stored in
another dtype on the way, then sends it to the GPU as above. The staging buffer of a slot is refilled
only once its previous copy has finished.

On the CPU the same hooks run with the CPU as host and compute device (plain copies, no streams):
the tests exercise the exact binding logic the GPU uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inference.adapters.base import LoadedModel
from inference.executors import mapped
from inference.executors.base import Executor, Placed, closed_on_failure, computes_upcast, place_resident_part

if TYPE_CHECKING:
    from inference.models import ModelRef
    from inference.planning.types import Plan

log = logging.getLogger(__name__)

ALIGN = 512  # bytes: as CUDA's caching allocator aligns blocks, so kernels see the alignment resident weights have
SLOTS = 2
_REGISTERED: dict[int, int] = {}  # data pointer -> bytes of every host buffer page-locked by a live stream


@dataclass
class _Packed:
    """One layer's tensors laid out in one flat byte buffer: the slots' layout, and the host copy's."""

    host: torch.Tensor | None  # flat uint8 host copy (pinned on a GPU); None: read from the checkpoint's files
    targets: list[tuple[torch.nn.Module, str, bool]]  # (owner, attribute, is_parameter)
    layout: list[tuple[int, int, torch.dtype, torch.Size]]  # (offset, bytes, dtype, shape) per target
    host_views: list[torch.Tensor]  # what the tensors are outside forward: the host copy's views, or the mapped ones
    width: int  # bytes the layout spans


class LayerStream:
    """Moves a ring of layers through GPU slots while the model runs.

    A stream whose construction fails part-way (out of memory while packing a layer or allocating the
    slots) closes itself before the error leaves: no host memory stays page-locked behind a failed load.
    ``mapped`` layers keep their memory-mapped tensors instead of being packed into host buffers, and
    ``convert`` maps a dtype the checkpoint stores to the dtype the slots hold (bf16 into an fp16 plan).
    """

    def __init__(self, layers: list[torch.nn.Module], device: torch.device, slots: int = SLOTS,
                 mapped: bool = False, convert: dict[torch.dtype, torch.dtype] | None = None):
        self.device = device
        self.cuda = device.type == "cuda"
        self.mapped, self.convert = mapped, convert or {}
        self.registered: list[torch.Tensor] = []  # host buffers page-locked in place, unlocked by ``close``
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.loads = 0  # layer copies issued, for tests and benchmarks
        with closed_on_failure([self]):
            self.packed = [self._pack(layer) for layer in layers]
            width = max(p.width for p in self.packed)
            count = min(slots, len(layers))
            self.slots = [torch.empty(width, dtype=torch.uint8, device=device) for _ in range(count)]
            self.slot_views = [[_views(slot, p.layout) for slot in self.slots] for p in self.packed]
            # Mapped layers reach a GPU through one pinned staging buffer per slot (none on the CPU).
            self.staging = [self._host_buffer(width) for _ in self.slots] if mapped and self.cuda else []
            self.stage_views = [[_views(stage, p.layout) for stage in self.staging] for p in self.packed]
            self.owner: list[int | None] = [None] * count
            self.slot_of: dict[int, int] = {}
            if self.cuda:
                self.stream = torch.cuda.Stream(device)
                self.copied = [torch.cuda.Event() for _ in self.slots]
                self.freed = [torch.cuda.Event() for _ in self.slots]
            for index, layer in enumerate(layers):
                self.handles.append(layer.register_forward_pre_hook(self._before(index)))
                self.handles.append(layer.register_forward_hook(self._after(index)))

    @property
    def nbytes(self) -> int:
        return sum(p.width for p in self.packed)

    def _pack(self, layer: torch.nn.Module) -> _Packed:
        targets: list[tuple[torch.nn.Module, str, bool]] = []
        tensors: list[torch.Tensor] = []
        seen: set[int] = set()
        for module in layer.modules():
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    targets.append((module, name, True))
                    tensors.append(param.data)
            for name, buf in module._buffers.items():
                if buf is not None:
                    targets.append((module, name, False))
                    tensors.append(buf)
        layout, offset = [], 0
        for t in tensors:
            dtype = self.convert.get(t.dtype, t.dtype)
            nbytes = t.numel() * dtype.itemsize
            layout.append((offset, nbytes, dtype, t.shape))
            offset += -(-nbytes // ALIGN) * ALIGN
        width = max(offset, ALIGN)
        if self.mapped:  # the layer keeps its memory-mapped tensors; copies read them
            return _Packed(None, targets, layout, tensors, width)
        host = self._host_buffer(width)
        views = _views(host, layout)
        _fill(views, tensors)
        packed = _Packed(host, targets, layout, views, width)
        _bind(packed, views)  # the layer's own (possibly memory-mapped) tensors are released here
        return packed

    def _host_buffer(self, nbytes: int) -> torch.Tensor:
        """Pinned host memory of exactly ``nbytes``.

        torch's pinned allocator rounds every block up to a power of two (a 233 MB layer would pin
        256 MB, a 10 GB set 16 GB), so ordinary memory is page-locked in place with cudaHostRegister;
        torch's pinned allocator is the fallback. On the CPU nothing is locked, but the buffer is counted
        the same way (``live_registrations``), so tests on the CPU see what a GPU would leave behind.
        """
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        if self.cuda:
            status = int(torch.cuda.cudart().cudaHostRegister(buffer.data_ptr(), nbytes, 0))
            if status != 0:
                _clear_last_error(self.device, f"cudaHostRegister returned {status}")
                return buffer.pin_memory()
        self.registered.append(buffer)
        _REGISTERED[buffer.data_ptr()] = nbytes
        return buffer

    def _load(self, index: int, slot: int) -> None:
        """Copy layer ``index`` into ``slot`` once the compute that last read the slot is done."""
        previous = self.owner[slot]
        if previous is not None:
            del self.slot_of[previous]
        self.owner[slot], self.slot_of[index] = index, slot
        packed = self.packed[index]
        self.loads += 1
        if packed.host is None and not self.cuda:  # mapped, on the CPU: from the mapping into the slot
            _fill(self.slot_views[index][slot], packed.host_views)
            return
        if packed.host is None:  # mapped: through the slot's staging buffer, once its last copy has left
            self.copied[slot].synchronize()
            _fill(self.stage_views[index][slot], packed.host_views)
        host = packed.host if packed.host is not None else self.staging[slot][: packed.width]
        target = self.slots[slot][: packed.width]
        if not self.cuda:
            target.copy_(host)
            return
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(self.freed[slot])
            target.copy_(host, non_blocking=True)
            self.copied[slot].record(self.stream)

    def _other_slot(self, busy: int | None) -> int:
        """A slot to load into: an empty one, else the one not in use by the layer about to run."""
        for slot, owner in enumerate(self.owner):
            if owner is None and slot != busy:
                return slot
        return next(s for s in range(len(self.slots)) if s != busy) if busy is not None else 0

    def _before(self, index: int):
        def hook(module, args):
            slot = self.slot_of.get(index)
            if slot is None:
                slot = self._other_slot(None)
                self._load(index, slot)
            if self.cuda:
                torch.cuda.current_stream(self.device).wait_event(self.copied[slot])
            _bind(self.packed[index], self.slot_views[index][slot])
            following = (index + 1) % len(self.packed)
            if following not in self.slot_of and len(self.slots) > 1:
                self._load(following, self._other_slot(slot))

        return hook

    def _after(self, index: int):
        def hook(module, args, output):
            slot = self.slot_of[index]
            if self.cuda:
                self.freed[slot].record(torch.cuda.current_stream(self.device))
            _bind(self.packed[index], self.packed[index].host_views)

        return hook

    def close(self) -> None:
        """Remove the hooks and unlock the host memory (after the GPU has finished with it).

        Runs on a partly built stream too, and unlocks every buffer even if CUDA reports an error on
        the way (a broken context ends with its process anyway, and memory must not stay registered).
        """
        for handle in self.handles:
            handle.remove()
        self.handles = []
        registered, self.registered = self.registered, []
        try:
            if self.cuda and registered:
                torch.cuda.synchronize(self.device)
        finally:
            for buffer in registered:
                _REGISTERED.pop(buffer.data_ptr(), None)
                if self.cuda:
                    status = int(torch.cuda.cudart().cudaHostUnregister(buffer.data_ptr()))
                    if status != 0:
                        _clear_last_error(self.device, f"cudaHostUnregister returned {status}")

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: CUDA may already be gone
            pass


def live_registrations() -> int:
    """How many host buffers streamed layers hold page-locked in this process now (on the CPU: would hold)."""
    return len(_REGISTERED)


def _clear_last_error(device: torch.device, what: str) -> None:
    """Read and reset CUDA's "last error" after a runtime call of ours failed.

    A failed cudart call leaves its error pending in the thread, and torch's check after the next kernel
    launch reports it as that kernel's failure (``AcceleratorError: CUDA error: part or all of the
    requested memory range is already mapped``, far from the call that failed). A kernel launched here
    takes it; a context that is really broken fails again at the next call and the worker starts afresh.
    """
    try:
        torch.ones(1, device=device)
    except RuntimeError as exc:
        log.warning("%s; cleared the pending CUDA error: %s", what, " ".join(str(exc).split())[:200])
    else:
        log.warning("%s", what)


def _fill(views: list[torch.Tensor], tensors: list[torch.Tensor]) -> None:
    """Copy ``tensors`` into ``views`` (converting dtypes where they differ); reading a memory-mapped tensor
    here is what pages it in from the page cache or the disk."""
    for view, tensor in zip(views, tensors, strict=True):
        view.copy_(tensor)


def _views(base: torch.Tensor, layout: list[tuple[int, int, torch.dtype, torch.Size]]) -> list[torch.Tensor]:
    return [base[offset: offset + nbytes].view(dtype).view(shape) for offset, nbytes, dtype, shape in layout]


def _bind(packed: _Packed, views: list[torch.Tensor]) -> None:
    for (owner, name, is_param), view in zip(packed.targets, views, strict=True):
        if is_param:
            owner._parameters[name].data = view
        else:
            owner._buffers[name] = view


class StreamedExecutor(Executor):
    name = "streamed"

    def load(self, ref: ModelRef, plan: Plan, path: Path) -> Placed:
        """From disk, the loader leaves the streamed layers on the meta device: they are never read into RAM
        (``place`` binds them to the checkpoint's memory-mapped tensors)."""
        if not plan.from_disk:
            return super().load(ref, plan, path)
        with mapped.undispatched():
            loaded = self.load_on_cpu(ref, plan, path, dict.fromkeys(plan.streamed_layers, "meta"))
        return self.place(loaded, plan)

    def place(self, loaded: LoadedModel, plan: Plan) -> Placed:
        device = torch.device(plan.device)
        model = loaded.model

        def place() -> list:
            convert = None
            if plan.from_disk and plan.streamed_layers:
                convert = mapped.bind_layers(model, plan.streamed_layers, loaded.path, getattr(torch, plan.dtype))
            with closed_on_failure(place_resident_part(model, plan, device, plan.streamed_layers)) as keep:
                if plan.streamed_layers:
                    layers = [model.get_submodule(p) for p in plan.streamed_layers]
                    slots = int(plan.offload.get("slots", SLOTS))
                    keep.append(LayerStream(layers, device, slots, convert is not None, convert))
                loaded.device = device
                return keep

        return Placed(loaded, computes_upcast(loaded, plan, place))


EXECUTOR = StreamedExecutor()
