"""Weights stored in half precision, computed in fp32: each module's weights upcast just before it runs.

For GPUs whose half-precision arithmetic is slow (Pascal) or wrong (GTX 16xx gives NaNs), and CPUs
short of RAM for fp32: memory and PCIe transfers are those of fp16/bf16, the arithmetic fp32's.

Why not diffusers' ``apply_layerwise_casting`` (``hooks/layerwise_casting.py`` in diffusers 0.42)? Its
hook calls ``module.to(dtype=compute)`` before a layer's forward and ``module.to(dtype=storage)``
after it, which replaces every ``param.data`` with a new tensor. The streamed executor binds each
offloaded layer's parameters to views of a GPU slot for the length of that layer's forward, so a
``.to`` inside it would copy the slot, and the cast back would leave the parameter pointing at a
private copy instead of the host buffer: the ring would leak a layer's worth of memory each step.
Its default skip list (anything named ``norm``) would also leave norms in fp16, which these models'
RMS norms multiply with fp32 activations. Here a hook upcasts into a temporary and puts back the very
tensor it found (a slot view, a host tensor, a resident weight), so it composes with any placement.

Small tensors (norms, biases, scalars the generation code reads directly) are converted to the compute
dtype once, for good: they cost little and are sometimes read outside ``forward``. Embedding tables
stay in storage and their looked-up rows are upcast, which is exact and reads only the rows. A linear
layer larger than ``UPCAST_CHUNK_ELEMENTS`` (an output projection over a 150k-word vocabulary) is upcast
and applied a slice of output rows at a time, so its fp32 copy never exists whole (the planner counts
one slice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference.executors.base import under
from inference.planning.estimates import UPCAST_CHUNK_ELEMENTS

SMALL = 1 << 16  # elements: tensors up to this size live in the compute dtype for good


def settle_small(model: torch.nn.Module, storage: torch.dtype, compute: torch.dtype,
                 skip: tuple[str, ...] = ()) -> None:
    """Convert the small ``storage``-dtype tensors (norms, biases, scalars, buffers) to ``compute`` for good.

    Before an executor packs or moves layers: the streamed executor's host buffers then hold them so.
    """
    for name, module in model.named_modules():
        if not under(name, skip):
            _settle_small(module, storage, compute)


def upcast_per_layer(model: torch.nn.Module, compute: torch.dtype, skip: tuple[str, ...] = (),
                     swapped: tuple[str, ...] = ()) -> list:
    """Hook every module of ``model`` holding weights narrower than ``compute`` so it computes in ``compute``.

    Registered after the executor's own hooks, so a streamed layer's weights are already bound to
    their GPU slot when its modules upcast them. Any floating-point weight narrower than ``compute`` is
    upcast, not only the plan's storage dtype: a layer the disk-streamed executor reads from a bf16 checkpoint into
    an fp16 plan holds bf16 outside its forward and fp16 inside; the modules under ``swapped`` (those layers)
    are hooked whatever they hold outside it, since an fp32 checkpoint's layers look computable then. Modules
    under ``skip`` (those computing on a CPU island, already fp32) are left alone. Returns the hook handles,
    kept alive with the model.
    """
    handles = []
    for name, module in model.named_modules():
        if under(name, skip):
            continue
        params = list(module.parameters(recurse=False))
        if not (any(_narrow(p, compute) for p in params) or params and under(name, swapped)):
            continue
        if isinstance(module, torch.nn.Embedding):
            handles.append(module.register_forward_hook(_rows_upcast(compute)))
            continue
        if isinstance(module, torch.nn.Linear) and module.weight.numel() > UPCAST_CHUNK_ELEMENTS:
            module.forward = _sliced_linear(module, compute)
            continue
        handles.append(module.register_forward_pre_hook(_weights_up(compute)))
        handles.append(module.register_forward_hook(_weights_back))
    return handles


def _settle_small(module: torch.nn.Module, storage: torch.dtype, compute: torch.dtype) -> None:
    for param in module.parameters(recurse=False):
        if param.dtype == storage and param.numel() <= SMALL:
            param.data = param.data.to(compute)
    for key, buf in module._buffers.items():
        if buf is not None and buf.dtype == storage:
            module._buffers[key] = buf.to(compute)


def _narrow(tensor: torch.Tensor, compute: torch.dtype) -> bool:
    """Whether ``tensor`` holds floating-point values narrower than ``compute``: the storage dtype, or a
    layer read from a checkpoint stored in another half-precision dtype (bf16 read into an fp16 plan)."""
    return tensor.is_floating_point() and tensor.dtype != compute


def _weights_up(compute: torch.dtype):
    def hook(module, args):
        kept = []
        for param in module.parameters(recurse=False):
            if _narrow(param, compute):
                kept.append((param, param.data))
                param.data = param.data.to(compute)
        module._vesper_stored = kept

    return hook


def _weights_back(module, args, output):
    for param, stored in getattr(module, "_vesper_stored", ()):
        param.data = stored
    module._vesper_stored = ()


def _rows_upcast(compute: torch.dtype):
    def hook(module, args, output):
        return output.to(compute) if isinstance(output, torch.Tensor) and output.is_floating_point() else output

    return hook


def _sliced_linear(module: torch.nn.Linear, compute: torch.dtype):
    """``module``'s forward in slices of output rows, each upcast just before it is applied."""
    rows = max(1, UPCAST_CHUNK_ELEMENTS // module.in_features)

    def forward(x: torch.Tensor) -> torch.Tensor:
        weight, bias = module.weight, module.bias
        parts = [F.linear(x, weight[i:i + rows].to(compute), None if bias is None else bias[i:i + rows].to(compute))
                 for i in range(0, module.out_features, rows)]
        return torch.cat(parts, dim=-1)

    return forward
