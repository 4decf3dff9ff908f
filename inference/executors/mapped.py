"""Layers bound to the checkpoint's own safetensors files, memory-mapped: the disk-streamed executor's host side.

safetensors' ``safe_open`` maps a file and hands out tensors that are views of the mapping: reading one
pages it in through the OS page cache, which keeps what RAM allows and gives it back under pressure, so
a model larger than the RAM runs without Vesper ever holding those layers, and nothing is written
anywhere (accelerate's disk offload first copies every offloaded weight into an offload folder).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from accelerate.hooks import remove_hook_from_module
from safetensors import safe_open

from inference.checkpoint_files import key_files


def bind_layers(model: torch.nn.Module, paths: tuple[str, ...], folder: Path,
                storage: torch.dtype) -> dict[torch.dtype, torch.dtype]:
    """Point every tensor of the layers at ``paths`` (left on the meta device by the loader) at its
    memory-mapped copy in ``folder``'s safetensors; returns the conversions the copies into the plan's
    ``storage`` dtype make (a checkpoint's bf16 into an fp16 plan; none when it stores ``storage``).

    The loader dispatched the model with accelerate's hooks because its device map named the meta
    device; they are removed, so no hook but the executor's moves these layers.
    """
    remove_hook_from_module(model, recurse=True)
    model.__dict__.pop("hf_device_map", None)
    wanted = {f"{path}.{name}": (owner, attribute, is_parameter)
              for path in paths for name, owner, attribute, is_parameter in _tensors(model.get_submodule(path))}
    files = key_files(folder)
    missing = sorted(set(wanted) - set(files))
    if missing:
        raise RuntimeError(f"cannot stream layers from disk: the checkpoint in {folder} has no tensor named "
                           f"{missing[0]} ({len(missing)} missing)")
    by_file: dict[Path, list[str]] = defaultdict(list)
    for key in wanted:
        by_file[files[key]].append(key)
    stored: set[torch.dtype] = set()
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for key in keys:
                owner, attribute, is_parameter = wanted[key]
                tensor = handle.get_tensor(key)
                if is_parameter:
                    owner._parameters[attribute].data = tensor
                else:
                    owner._buffers[attribute] = tensor
                if tensor.is_floating_point():
                    stored.add(tensor.dtype)
    return {dtype: storage for dtype in stored if dtype != storage}


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
