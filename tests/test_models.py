"""Resolving model names, hub ids and folders without the network."""

from __future__ import annotations

import json

import pytest

from inference import registry
from inference.errors import ModelNotFoundError, OfflineModelError
from inference.models import companion_repos, describe, fetch


def test_every_registered_model_describes_without_download():
    for name, spec in registry.specs().items():
        ref = describe(name)
        assert ref.hub_id == spec.hub_id and ref.spec is spec
        assert ref.adapter.family == spec.family


def test_registered_hub_id_resolves_to_its_spec():
    assert describe("sesame/csm-1b").spec is registry.specs()["csm-1b"]


def test_tiny_folder_resolves_by_model_type(tiny_checkpoint):
    ref = describe(str(tiny_checkpoint("pocket_tts")))
    assert ref.adapter.family == "pocket_tts" and fetch(ref) == ref.local_path


def test_uncached_registered_model_while_offline_names_the_fix():
    with pytest.raises(OfflineModelError, match="hf download sesame/csm-1b"):
        fetch(describe("csm-1b"))


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="'bert' model"):
        describe(str(tmp_path))


def test_companion_repos_come_from_the_processor_config(tmp_path):
    (tmp_path / "processor_config.json").write_text(json.dumps(
        {"audio_tokenizer": {"audio_tokenizer_class": "X", "audio_tokenizer_name_or_path": "owner/codec"},
         "feature_extractor": {"sampling_rate": 24000}}))
    assert companion_repos(tmp_path) == ["owner/codec"]
    assert companion_repos(tmp_path / "missing") == []
