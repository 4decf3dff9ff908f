"""Shared fixtures: no network, tiny checkpoints built once per session, a real reference recording."""

from __future__ import annotations

import os
import shutil
import subprocess
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
SPOKEN_TEXT = ("Recording a voice for Vesper. I read a few sentences at an even pace, close to the microphone, "
               "so that the clone sounds like me.")


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


@pytest.fixture(scope="session")
def spoken(tmp_path_factory) -> tuple[np.ndarray, int]:
    """``SPOKEN_TEXT`` said by espeak-ng (peaks at -6 dBFS), as float32 samples and its rate: what the
    recorder tests feed the virtual microphone."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (.ci/run installs it)")
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), SPOKEN_TEXT], check=True, timeout=60)
    audio, rate = sf.read(path, dtype="float32")
    return audio / np.abs(audio).max() * 0.5, rate
