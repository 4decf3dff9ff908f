"""``python -m tests.tiny_models --full-size``: registered models at their real size, through the app's path."""

from __future__ import annotations

import math

import pytest
from safetensors import safe_open

from inference.models import describe
from inference.registry import specs
from tests.tiny_models.full_size import build_full


def _stored_elements(folder) -> int:
    total = 0
    for file in folder.rglob("*.safetensors"):
        with safe_open(file, "pt") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total


def _meta_elements(name: str) -> int:
    """Every tensor the registered model saves (its state dict), sized on the meta device."""
    ref = describe(name)
    return sum(t.numel() for t in ref.adapter.meta_model(ref.config).state_dict().values())


@pytest.mark.slow
def test_full_size_pocket_checkpoint_has_the_registered_size_and_loads(tmp_path):
    folder = build_full("pocket-tts", tmp_path / "pocket-tts", device="cpu")
    assert _stored_elements(folder) == _meta_elements("pocket-tts")
    ref = describe(str(folder))  # the app's own resolution of a folder
    assert ref.config.hidden_size == specs()["pocket-tts"].config().hidden_size
    assert ref.config.num_hidden_layers == specs()["pocket-tts"].config().num_hidden_layers
