"""How big each part of a model is, computed on the meta device from its config alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.adapters.base import Component, ModelAdapter, Role
from inference.models import ModelRef


@dataclass(frozen=True)
class ComponentSize:
    """Parameter and buffer bytes of one component at a given dtype; per-layer bytes for backbones."""

    component: Component
    nbytes: int
    layer_nbytes: tuple[int, ...] = ()

    @property
    def role(self) -> Role:
        return self.component.role


@dataclass(frozen=True)
class ModelSize:
    components: tuple[ComponentSize, ...]
    kv_bytes_per_token: int  # backbone K and V, all layers, one sequence, one position
    hidden_size: int
    vocab_size: int

    @property
    def total_bytes(self) -> int:
        return sum(c.nbytes for c in self.components)

    def by_role(self, role: Role) -> list[ComponentSize]:
        return [c for c in self.components if c.role is role]


def _tensor_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes once loaded in ``dtype``: floating tensors take the dtype's size, others keep theirs."""
    size = torch.tensor([], dtype=dtype).element_size()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total


def measure(ref: ModelRef, dtype: torch.dtype) -> ModelSize:
    """Sizes of every component of ``ref`` at ``dtype``, without touching real weights."""
    adapter: ModelAdapter = ref.adapter
    model = adapter.meta_model(ref.config)
    sizes = []
    backbone_config = None
    for component in adapter.components(ref.config):
        modules = [model.get_submodule(p) for p in component.module_paths]
        layers: tuple[int, ...] = ()
        if component.layers_path:
            layers = tuple(_tensor_bytes(layer, dtype) for layer in model.get_submodule(component.layers_path))
        if component.role is Role.BACKBONE and backbone_config is None:
            backbone_config = getattr(modules[0], "config", None)
        sizes.append(ComponentSize(component, sum(_tensor_bytes(m, dtype) for m in modules), layers))
    hidden = int(getattr(backbone_config, "hidden_size", 1024))
    vocab = int(getattr(backbone_config, "vocab_size", 32000))
    return ModelSize(tuple(sizes), _kv_bytes_per_token(backbone_config, dtype), hidden, vocab)


def _kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    if config is None:
        return 0
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.tensor([], dtype=dtype).element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element
