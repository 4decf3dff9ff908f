"""Shared fixtures: no network, tiny checkpoints built once per session, a real reference recording."""

from __future__ import annotations

import os
from pathlib import Path

# Set before transformers / huggingface_hub are imported anywhere: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE_VOICE = REPO / "assets" / "voices" / "sample.wav"
SAMPLE_TRANSCRIPT = (REPO / "assets" / "voices" / "sample.txt").read_text().strip()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(family) -> Path``: a tiny random checkpoint folder, built once per session."""
    from tests.tiny_models import build

    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def reference_voice() -> tuple[np.ndarray, int]:
    """A real spoken sentence (espeak-ng, 24 kHz mono) as float32 samples and its rate."""
    audio, rate = sf.read(SAMPLE_VOICE, dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def reference_transcript() -> str:
    return SAMPLE_TRANSCRIPT
