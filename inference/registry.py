"""Which model families and registered models Vesper knows.

Families are adapter modules under ``inference.adapters``; each lists its registered models
(``SPECS``) with their real architecture, so the planner can size a model before downloading it.
Adding a family means adding its module name here and nothing else.
"""

from __future__ import annotations

import importlib
from functools import cache

from inference.adapters.base import ModelAdapter, ModelSpec

FAMILY_MODULES = ("pocket_tts", "csm", "vibevoice")


@cache
def _modules() -> tuple:
    return tuple(importlib.import_module(f"inference.adapters.{name}") for name in FAMILY_MODULES)


def adapters() -> dict[str, ModelAdapter]:
    """Family name -> adapter."""
    return {m.ADAPTER.family: m.ADAPTER for m in _modules()}


def specs() -> dict[str, ModelSpec]:
    """Registered short name -> spec, in registration order."""
    return {spec.name: spec for m in _modules() for spec in m.SPECS}


def adapter_for_family(family: str) -> ModelAdapter:
    return adapters()[family]


def adapter_for_model_type(model_type: str) -> ModelAdapter | None:
    """The adapter that reads checkpoints whose config.json says ``model_type``."""
    return next((a for a in adapters().values() if a.model_type == model_type), None)


def spec_for_hub_id(hub_id: str) -> ModelSpec | None:
    return next((s for s in specs().values() if s.hub_id.lower() == hub_id.lower()), None)
