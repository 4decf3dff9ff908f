"""User settings: defaults, the settings file, and the environment variables that override them."""

from __future__ import annotations

import json

import pytest

from inference import paths, settings
from inference.defaults import DEFAULT_CHUNK_CHARS, DEFAULT_MODEL
from inference.errors import BadInputError
from inference.units import GiB


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    monkeypatch.delenv(settings.VRAM_LIMIT_ENV, raising=False)


def test_without_a_file_every_setting_has_its_default():
    loaded = settings.load()
    assert (loaded.chunk_chars, loaded.default_model, loaded.vram_limit_bytes) == (DEFAULT_CHUNK_CHARS,
                                                                                   DEFAULT_MODEL, 0)


def test_saved_settings_load_back_from_the_user_config_folder(tmp_path):
    chosen = settings.Settings(chunk_chars=200, micro_batch=2, low_latency=True, vram_limit_gib=5.5,
                               default_model="csm-1b", log_level="info")
    path = settings.save(chosen)
    assert path == tmp_path / "config" / "settings.json" and settings.load() == chosen
    assert chosen.vram_limit_bytes == int(5.5 * GiB)


def test_unknown_keys_are_ignored_and_a_bad_value_is_one_sentence(tmp_path):
    path = paths.settings_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"chunk_chars": 150, "from_a_newer_version": 1}))
    assert settings.load().chunk_chars == 150
    path.write_text(json.dumps({"chunk_chars": 10, "log_level": "loud"}))
    with pytest.raises(BadInputError, match=r"chunk_chars must be .* at least 80; log_level must be one of"):
        settings.load()


def test_the_environment_overrides_the_vram_limit_and_names_the_fault(monkeypatch):
    monkeypatch.setenv(settings.VRAM_LIMIT_ENV, "4")
    assert settings.Settings(vram_limit_gib=6).vram_limit_bytes == 4 * GiB
    monkeypatch.setenv(settings.VRAM_LIMIT_ENV, "lots")
    with pytest.raises(BadInputError, match="VESPER_VRAM_LIMIT 'lots' is not a size"):
        _ = settings.Settings().vram_limit_bytes
    monkeypatch.setenv(settings.FAULT_ENV, "oom@2")
    assert settings.fault_spec() == "oom@2"


def test_the_worker_chooses_expandable_segments_unless_the_user_chose_an_allocator(monkeypatch):
    monkeypatch.setattr(settings.sys, "platform", "linux")
    monkeypatch.delenv(settings.ALLOCATOR_ENV, raising=False)
    settings.configure_cuda_allocator()
    assert settings.os.environ[settings.ALLOCATOR_ENV] == "expandable_segments:True"
    monkeypatch.setenv(settings.ALLOCATOR_ENV, "max_split_size_mb:128")
    settings.configure_cuda_allocator()
    assert settings.os.environ[settings.ALLOCATOR_ENV] == "max_split_size_mb:128"
    monkeypatch.delenv(settings.ALLOCATOR_ENV)
    monkeypatch.setattr(settings.sys, "platform", "win32")  # torch has no expandable segments there
    settings.configure_cuda_allocator()
    assert settings.ALLOCATOR_ENV not in settings.os.environ
