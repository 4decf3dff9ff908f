"""The stored sizes the torch-free planner runs on equal the meta-device measurement of every registered model."""

from __future__ import annotations

import json

import pytest

from inference import registry
from inference.models import describe
from inference.planning.shapes import STORE, ModelShape, stored
from inference.tools import model_sizes


def test_the_data_file_equals_the_meta_measurement_of_every_registered_model(capsys):
    """If this fails, run ``python -m inference.tools.model_sizes`` and commit the file."""
    assert model_sizes.main(["--check"]) == 0, capsys.readouterr().out
    assert "up to date" in capsys.readouterr().out
    assert set(json.loads(STORE.read_text())) == set(registry.specs())


@pytest.mark.parametrize("name", list(registry.specs()))
def test_a_registered_model_plans_on_the_stored_shape_and_a_folder_is_measured(name, tiny_checkpoint):
    ref = describe(name)
    assert ref.shape is stored()[name]
    assert ModelShape.from_dict(ref.shape.to_dict()) == ref.shape
    bf16, fp32 = ref.shape.at("bfloat16"), ref.shape.at("float32")
    assert fp32.total_bytes > bf16.total_bytes > 0 and fp32.kv_bytes_per_token == 2 * bf16.kv_bytes_per_token
    folder = describe(str(tiny_checkpoint(registry.specs()[name].family)))
    assert folder.shape.family == ref.shape.family and folder.shape.digest != ref.shape.digest

