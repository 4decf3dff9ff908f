"""Measuring a model's shape on the meta device from its config alone (needs torch).

Registered models are measured once, by ``python -m inference.tools.model_sizes``, into the data file
the planner reads; only folders and unregistered hub ids come here at planning time. Besides the
elements of every component, this records what offloading needs: the module path and size of every
repeated decoder layer (the unit the streamed and DeepSpeed executors move), and the module paths
that cover a component once its layers are addressed one by one (so a device map can place each
layer on its own).
"""

from __future__ import annotations

from itertools import chain

import torch

from inference.adapters.base import ModelAdapter
from inference.families import Role
from inference.planning.shapes import ComponentShape, ModelShape, Tensors

_CACHE: dict[tuple[str, str], ModelShape] = {}


def measure(adapter: ModelAdapter, config) -> ModelShape:
    """The shape of the model ``adapter`` builds from ``config``, without touching real weights.

    Cached per (family, config): the worker describes the same folder again for every job.
    """
    key = (adapter.family, config.to_json_string(use_diff=False))
    if key not in _CACHE:
        _CACHE[key] = _measure(adapter, config)
    return _CACHE[key]


def _measure(adapter: ModelAdapter, config) -> ModelShape:
    model = adapter.meta_model(config)
    shapes = []
    backbone_config = None
    for component in adapter.components(config):
        modules = [model.get_submodule(p) for p in component.module_paths]
        layer_paths: tuple[str, ...] = ()
        layers: tuple[Tensors, ...] = ()
        fixed: tuple[str, ...] = ()
        if component.layers_path:
            stack = model.get_submodule(component.layers_path)
            layer_paths = tuple(f"{component.layers_path}.{i}" for i in range(len(stack)))
            layers = tuple(_tensors(layer) for layer in stack)
            fixed = tuple(p for root in component.module_paths for p in _cover(model, root, component.layers_path))
        if component.role is Role.BACKBONE and backbone_config is None:
            backbone_config = getattr(modules[0], "config", None)
        shapes.append(ComponentShape(component.name, component.module_paths, _sum(_tensors(m) for m in modules),
                                     component.layers_path, layer_paths, layers, fixed))
    roots = [p for c in shapes for p in c.module_paths]
    return ModelShape(adapter.family, tuple(shapes), _kv_floats_per_token(backbone_config),
                      int(getattr(backbone_config, "hidden_size", 1024)),
                      int(getattr(backbone_config, "vocab_size", 32000)), _loose(model, roots),
                      _lookups(model, adapter, config))


def _tensors(module: torch.nn.Module) -> Tensors:
    """Floating elements (they load in the plan's dtype) and the bytes of the others (kept as they are)."""
    floats = other = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            floats += t.numel()
        else:
            other += t.numel() * t.element_size()
    return Tensors(floats, other)


def _sum(parts) -> Tensors:
    parts = list(parts)
    return Tensors(sum(p.floats for p in parts), sum(p.other_bytes for p in parts))


def _lookups(model: torch.nn.Module, adapter: ModelAdapter, config) -> tuple[tuple[str, Tensors], ...]:
    """Embedding tables that can be read on the CPU: a step looks up a few rows, not the whole table.

    Tables tied to another module (an lm_head sharing the weight) are left out: that module multiplies
    by the whole table every step and must keep it on the GPU.
    """
    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    out = []
    for c in adapter.components(config):
        if c.role is not Role.EMBEDDINGS or c.pinned_to_compute:
            continue
        for path in c.module_paths:
            module = model.get_submodule(path)
            if isinstance(module, torch.nn.Embedding) and uses[id(module.weight)] == 1:
                out.append((path, _tensors(module)))
    return tuple(out)


def _loose(model: torch.nn.Module, roots: list[str]) -> tuple[str, ...]:
    """Parameters and buffers that no component covers; a device map must still place them."""
    names = [n for n, _ in chain(model.named_parameters(remove_duplicate=False),
                                 model.named_buffers(remove_duplicate=False))]
    return tuple(n for n in names if not any(n == r or n.startswith(r + ".") for r in roots))


def _cover(model: torch.nn.Module, root: str, layers_path: str) -> list[str]:
    """Paths (modules and direct tensors) covering ``root`` except the layers under ``layers_path``.

    Walks from ``root`` down to the layers' container, keeping every sibling met on the way, so that
    a device map can give the layers their own entries while the rest of ``root`` stays one piece.
    """
    if root == layers_path:
        return []
    if not layers_path.startswith(root + "."):
        return [root]
    out: list[str] = []
    path = root
    for part in layers_path[len(root) + 1:].split("."):
        module = model.get_submodule(path)
        out += [f"{path}.{name}" for name, _ in module.named_parameters(recurse=False)]
        out += [f"{path}.{name}" for name, _ in module.named_buffers(recurse=False)]
        out += [f"{path}.{name}" for name, _ in module.named_children() if name != part]
        path = f"{path}.{part}"
    return out


def _kv_floats_per_token(config) -> int:
    if config is None:
        return 0
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim
