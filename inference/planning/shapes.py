"""A model's sizes as element counts, so bytes at any dtype follow without torch.

A ``ModelShape`` holds, per component, how many floating-point elements its tensors have (they take
the dtype's size once loaded) and the bytes of its other tensors (integer buffers keep theirs), the
same for every repeated decoder layer, the backbone's KV elements per position, and the module paths
an accelerate-style device map needs. ``at(dtype)`` gives the ``ModelSize`` the fit works with.

Registered models' shapes are stored in ``inference/model_sizes.json`` (written by
``python -m inference.tools.model_sizes``; a test checks it against the meta-device measurement), so
planning for them imports neither torch nor transformers. Folders and unregistered hub ids are
measured on the meta device (``inference.planning.measure``), which needs torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from inference.dtypes import ELEMENT_BYTES
from inference.families import FAMILIES, Component, Role

STORE = Path(__file__).resolve().parent.parent / "model_sizes.json"


@dataclass(frozen=True)
class Tensors:
    """Floating-point elements (sized by the dtype they load in) and the bytes of the other tensors."""

    floats: int = 0
    other_bytes: int = 0

    def nbytes(self, element: int) -> int:
        return self.floats * element + self.other_bytes


@dataclass(frozen=True)
class ComponentShape:
    name: str
    module_paths: tuple[str, ...]
    tensors: Tensors
    layers_path: str | None = None
    layer_paths: tuple[str, ...] = ()
    layers: tuple[Tensors, ...] = ()
    fixed_paths: tuple[str, ...] = ()  # the component's other modules, which with the layers cover it


@dataclass(frozen=True)
class ModelShape:
    family: str
    components: tuple[ComponentShape, ...]
    kv_floats_per_token: int  # backbone K and V elements, all layers, one sequence, one position
    hidden_size: int
    vocab_size: int
    loose_paths: tuple[str, ...] = ()  # tensors outside every component (a model's own scalars)
    lookups: tuple[tuple[str, Tensors], ...] = ()  # untied embedding tables: cheap to read on a CPU

    def at(self, dtype: str) -> ModelSize:
        """The sizes once loaded in ``dtype`` ("float32", "bfloat16", "float16")."""
        element = ELEMENT_BYTES[dtype]
        family = FAMILIES[self.family]
        components = tuple(
            ComponentSize(family.component(c.name, c.module_paths, c.layers_path), c.tensors.nbytes(element),
                          tuple(t.nbytes(element) for t in c.layers), c.layer_paths, c.fixed_paths)
            for c in self.components)
        return ModelSize(components, self.kv_floats_per_token * element, self.hidden_size, self.vocab_size,
                         element, self.loose_paths, tuple((p, t.nbytes(element)) for p, t in self.lookups))

    @property
    def parameters(self) -> int:
        """Floating-point elements in all: what a model card calls its parameter count."""
        return sum(c.tensors.floats for c in self.components)

    @property
    def digest(self) -> str:
        """A short hash of the shape: another checkpoint layout is another plan (calibration, history)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelShape:
        components = tuple(
            ComponentShape(c["name"], tuple(c["module_paths"]), Tensors(**c["tensors"]), c["layers_path"],
                           tuple(c["layer_paths"]), tuple(Tensors(**t) for t in c["layers"]),
                           tuple(c["fixed_paths"]))
            for c in data["components"])
        return cls(data["family"], components, int(data["kv_floats_per_token"]), int(data["hidden_size"]),
                   int(data["vocab_size"]), tuple(data["loose_paths"]),
                   tuple((p, Tensors(**t)) for p, t in data["lookups"]))


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

    @property
    def tower(self) -> bool:
        """Whether it is a per-frame part other than the backbone whose layers may stream (``streams_layers``)."""
        return bool(self.layer_paths) and self.role is not Role.BACKBONE and self.component.streams_layers


@dataclass(frozen=True)
class ModelSize:
    components: tuple[ComponentSize, ...]
    kv_bytes_per_token: int  # backbone K and V, all layers, one sequence, one position
    hidden_size: int
    vocab_size: int
    element_size: int = 2  # bytes per floating-point element at the measured dtype
    loose_paths: tuple[str, ...] = ()
    lookups: tuple[tuple[str, int], ...] = ()  # (path, bytes) of untied embedding tables

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
        return [(p, n) for c in self.components if c.streamable
                for p, n in zip(c.layer_paths, c.layer_nbytes, strict=True)]

    @property
    def tower_layers(self) -> list[tuple[str, int]]:
        """(path, bytes) of the per-frame towers' layers that may stream, in component order."""
        return [(p, n) for c in self.components if c.tower
                for p, n in zip(c.layer_paths, c.layer_nbytes, strict=True)]


@cache
def stored() -> dict[str, ModelShape]:
    """Registered name -> shape, from the data file kept with the registry."""
    return {name: ModelShape.from_dict(data) for name, data in json.loads(STORE.read_text()).items()}
