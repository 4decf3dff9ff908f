"""Which model families and registered models Vesper knows, and the adapter that runs each family.

The facts about families and the registered models (``inference.families``) need no torch; an
adapter module (``inference.adapters.<family>``) is imported only when a model is loaded or
measured. Adding a family means adding its facts and registered models there, and its adapter module.
"""

from __future__ import annotations

import importlib

from inference.families import FAMILIES, SPECS, ModelSpec

FAMILY_MODULES = tuple(FAMILIES)


def adapter_for_family(family: str):
    """The family's adapter (imports torch and transformers)."""
    return importlib.import_module(f"inference.adapters.{family}").ADAPTER


def adapters() -> dict:
    """Family name -> adapter (imports every adapter module)."""
    return {family: adapter_for_family(family) for family in FAMILIES}


def specs() -> dict[str, ModelSpec]:
    """Registered short name -> spec, in registration order."""
    return {spec.name: spec for spec in SPECS}


def family_for_model_type(model_type: str) -> str | None:
    """The family that reads checkpoints whose config.json says ``model_type``."""
    return next((f.family for f in FAMILIES.values() if f.model_type == model_type), None)


def spec_for_hub_id(hub_id: str) -> ModelSpec | None:
    return next((s for s in SPECS if s.hub_id.lower() == hub_id.lower()), None)
