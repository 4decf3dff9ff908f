"""Layers bound to the checkpoint's own safetensors files, memory-mapped: the disk-streamed executor's host side.

safetensors' ``safe_open`` maps a file and hands out tensors that are views of the mapping: reading one
pages it in through the OS page cache, which keeps what RAM allows and gives it back under pressure, so
a model larger than the RAM runs without Vesper ever holding those layers, and nothing is written
anywhere (accelerate's disk offload first copies every offloaded weight into an offload folder).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers.modeling_utils
from safetensors import safe_open

from inference.checkpoint_files import key_files

_Holder = tuple[str, torch.nn.Module, str, bool]  # (name in the checkpoint, owner module, attribute, is a parameter)


def bind_layers(model: torch.nn.Module, paths: tuple[str, ...], folder: Path,
                storage: torch.dtype) -> dict[torch.dtype, torch.dtype]:
    """Point every tensor of the layers at ``paths`` (left on the meta device by the loader) at its
    memory-mapped copy in ``folder``'s safetensors; returns the conversions the copies into the plan's
    ``storage`` dtype make (a checkpoint's bf16 into an fp16 plan; none when it stores ``storage``).

    A parameter shared by two modules of a layer is stored once, under either name, and stays shared.
    """
    files = key_files(folder)
    holders: dict[int, list[_Holder]] = defaultdict(list)
    for path in paths:
        for name, owner, attribute, is_parameter in _tensors(model.get_submodule(path)):
            tensor = owner._parameters[attribute] if is_parameter else owner._buffers[attribute]
            holders[id(tensor)].append((f"{path}.{name}", owner, attribute, is_parameter))
    by_file: dict[Path, list[tuple[str, list[_Holder]]]] = defaultdict(list)
    for shared in holders.values():
        key = next((name for name, *_ in shared if name in files), None)
        if key is None:
            raise RuntimeError(f"cannot stream layers from disk: the checkpoint in {folder} has no tensor named "
                               f"{shared[0][0]}")
        by_file[files[key]].append((key, shared))
    stored: set[torch.dtype] = set()
    for file, entries in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for key, shared in entries:
                tensor = handle.get_tensor(key)
                bound = torch.nn.Parameter(tensor, requires_grad=False) if shared[0][3] else tensor
                for _, owner, attribute, is_parameter in shared:
                    (owner._parameters if is_parameter else owner._buffers)[attribute] = bound
                if tensor.is_floating_point():
                    stored.add(tensor.dtype)
    return {dtype: storage for dtype in stored if dtype != storage}


@contextmanager
def undispatched() -> Iterator[None]:
    """Load with a device map naming the meta device for the streamed layers, without accelerate's dispatch.

    transformers hands any device map of more than one device to ``accelerate.dispatch_model``, which would
    take "meta" for the execution device, move every module on the CPU into an offload map and hook them
    all. Here nothing needs hooks: the CPU modules are where they belong (memory-mapped where the dtype
    matches) and the meta layers are the executor's to bind, so the dispatch transformers calls
    (``modeling_utils.accelerate_dispatch``) is skipped for the length of the load.
    """
    module = transformers.modeling_utils
    dispatch = module.accelerate_dispatch  # AttributeError if transformers renames it: the tests load through here
    module.accelerate_dispatch = lambda *args, **kwargs: None
    try:
        yield
    finally:
        module.accelerate_dispatch = dispatch


def _tensors(layer: torch.nn.Module):
    """(name within the layer, owner module, attribute, is_parameter) of every tensor the layer holds.

    A buffer the checkpoint does not store (computed at construction) cannot be on the meta device and
    be streamed, so finding one there is an error of the plan, reported by name.
    """
    for module_name, module in layer.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attribute, param in module._parameters.items():
            if param is not None:
                yield prefix + attribute, module, attribute, True
        for attribute, buffer in module._buffers.items():
            if buffer is not None and attribute not in module._non_persistent_buffers_set:
                yield prefix + attribute, module, attribute, False
            elif buffer is not None and buffer.is_meta:
                raise RuntimeError(f"cannot stream a layer from disk: its buffer {prefix + attribute} is not "
                                   "stored in the checkpoint")
