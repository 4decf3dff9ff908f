"""Tiny random checkpoints of the real model classes, for tests that must not download anything.

Each family module exposes ``build(out_dir: Path, seed: int = 0) -> Path``, which writes a folder
with a few-layers-wide random checkpoint (safetensors), its processor and an offline-built
byte-level tokenizer, loadable by Vesper as ``--model out_dir``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

FAMILIES = ("pocket_tts", "csm", "vibevoice")


def build(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint of one family into ``out_dir`` and return it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    module = importlib.import_module(f"tests.tiny_models.{family}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return module.build(out_dir, seed=seed)


def build_all(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write every family's tiny checkpoint under ``root/<family>``."""
    return {family: build(family, root / family, seed) for family in FAMILIES}
