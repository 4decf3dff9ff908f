"""How big each part of a model is, computed on the meta device from its config alone.

Besides the bytes of every component, this records what offloading needs to know: the module path
and size of every repeated decoder layer (the unit the streamed and DeepSpeed executors move), and
the module paths that cover a component once its layers are addressed one by one (so an
accelerate-style device map can place each layer on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch

from inference.adapters.base import Component, ModelAdapter, Role
from inference.models import ModelRef


@dataclass(frozen=True)
class ComponentSize:
    """Parameter and buffer bytes of one component at a given dtype, with its layers when it has some.

    ``layer_paths``/``layer_nbytes`` list the decoder layers in execution order; ``fixed_paths`` are the
    component's other modules (norms, rotary tables) that together with the layers cover it.
    """

    component: Component
    nbytes: int
    layer_nbytes: tuple[int, ...] = ()
    layer_paths: tuple[str, ...] = ()
    fixed_paths: tuple[str, ...] = ()

    @property
    def role(self) -> Role:
        return self.component.role

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def streamable(self) -> bool:
        """Whether its layers can be moved one at a time while it runs."""
        return bool(self.layer_paths) and self.role is Role.BACKBONE and not self.component.pinned_to_compute


@dataclass(frozen=True)
class ModelSize:
    components: tuple[ComponentSize, ...]
    kv_bytes_per_token: int  # backbone K and V, all layers, one sequence, one position
    hidden_size: int
    vocab_size: int
    element_size: int = 2  # bytes per floating-point element at the measured dtype
    loose_paths: tuple[str, ...] = ()  # tensors outside every component (a model's own scalars)
    lookups: tuple[tuple[str, int], ...] = ()  # (path, bytes) of untied embedding tables: cheap to read on a CPU

    @property
    def total_bytes(self) -> int:
        return sum(c.nbytes for c in self.components)

    def by_role(self, role: Role) -> list[ComponentSize]:
        return [c for c in self.components if c.role is role]

    def named(self, name: str) -> ComponentSize:
        return next(c for c in self.components if c.name == name)

    @property
    def streamable_layers(self) -> list[tuple[str, int]]:
        """(path, bytes) of every layer that may be streamed, in execution order."""
        return [(p, n) for c in self.components if c.streamable for p, n in zip(c.layer_paths, c.layer_nbytes,
                                                                                 strict=True)]


def _tensor_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes once loaded in ``dtype``: floating tensors take the dtype's size, others keep theirs."""
    size = torch.tensor([], dtype=dtype).element_size()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total


_CACHE: dict[tuple, ModelSize] = {}


def measure(ref: ModelRef, dtype: torch.dtype) -> ModelSize:
    """Sizes of every component of ``ref`` at ``dtype``, without touching real weights.

    Cached per (family, config, dtype): the planner asks for the same model at every rung of its ladder.
    """
    key = (ref.adapter.family, ref.config.to_json_string(use_diff=False), str(dtype))
    if key not in _CACHE:
        _CACHE[key] = _measure(ref.adapter, ref.config, dtype)
    return _CACHE[key]


def _measure(adapter: ModelAdapter, config, dtype: torch.dtype) -> ModelSize:
    model = adapter.meta_model(config)
    sizes = []
    backbone_config = None
    for component in adapter.components(config):
        modules = [model.get_submodule(p) for p in component.module_paths]
        layer_paths: tuple[str, ...] = ()
        layer_bytes: tuple[int, ...] = ()
        fixed: tuple[str, ...] = ()
        if component.layers_path:
            layers = model.get_submodule(component.layers_path)
            layer_paths = tuple(f"{component.layers_path}.{i}" for i in range(len(layers)))
            layer_bytes = tuple(_tensor_bytes(layer, dtype) for layer in layers)
            fixed = tuple(p for root in component.module_paths for p in _cover(model, root, component.layers_path))
        if component.role is Role.BACKBONE and backbone_config is None:
            backbone_config = getattr(modules[0], "config", None)
        sizes.append(ComponentSize(component, sum(_tensor_bytes(m, dtype) for m in modules), layer_bytes,
                                   layer_paths, fixed))
    hidden = int(getattr(backbone_config, "hidden_size", 1024))
    vocab = int(getattr(backbone_config, "vocab_size", 32000))
    element = torch.tensor([], dtype=dtype).element_size()
    roots = [p for c in sizes for p in c.component.module_paths]
    return ModelSize(tuple(sizes), _kv_bytes_per_token(backbone_config, dtype), hidden, vocab, element,
                     _loose(model, roots), _lookups(model, sizes, dtype))


def _lookups(model: torch.nn.Module, sizes: list[ComponentSize], dtype: torch.dtype) -> tuple[tuple[str, int], ...]:
    """Embedding tables that can be read on the CPU: a step looks up a few rows, not the whole table.

    Tables tied to another module (an lm_head sharing the weight) are left out: that module multiplies
    by the whole table every step and must keep it on the GPU.
    """
    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    out = []
    for c in sizes:
        if c.role is not Role.EMBEDDINGS or c.component.pinned_to_compute:
            continue
        for path in c.component.module_paths:
            module = model.get_submodule(path)
            if isinstance(module, torch.nn.Embedding) and uses[id(module.weight)] == 1:
                out.append((path, _tensor_bytes(module, dtype)))
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


def _kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    if config is None:
        return 0
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.tensor([], dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element
