"""The catalogue the GUI lists models from: registered models, their sizes, whether they are downloaded,
and a plan preview for any machine description."""

from __future__ import annotations

import pytest

from inference import catalogue, registry
from inference.errors import VesperError
from inference.hardware import PRESETS
from inference.models import describe
from inference.planner import Workload, make_plan


def _cache_repo(cache, repo_id: str, files: dict[str, bytes]) -> None:
    """A repo laid out as huggingface_hub stores downloads: blobs, a ref, a snapshot naming the blobs."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for index, (name, data) in enumerate(files.items()):
        blob = root / "blobs" / f"{index:040d}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)


def test_every_registered_model_is_listed_with_its_size_and_rates():
    entries = catalogue.models(check_cache=False)
    assert [e.name for e in entries] == list(registry.specs())
    by_name = {e.name: e for e in entries}
    assert by_name["pocket-tts"].parameters == pytest.approx(109.5e6, rel=0.01)
    assert by_name["vibevoice-7b"].parameters == pytest.approx(9.343e9, rel=0.001)
    assert by_name["vibevoice-1.5b"].download_bytes == pytest.approx(2 * 2.704e9, rel=0.01)  # bf16 on the hub
    assert all(e.download_estimated and e.sample_rate == 24_000 and e.cached is None for e in entries)
    assert by_name["csm-1b"].needs_transcript and not by_name["pocket-tts"].needs_transcript
    assert by_name["pocket-tts"].repos == ("eustlb/pocket-tts", "eustlb/pocket-tts-audio-tokenizer")


def test_a_model_counts_as_downloaded_when_every_repo_it_needs_has_weights_in_the_cache(tmp_path):
    cache = tmp_path / "hub"
    _cache_repo(cache, "eustlb/pocket-tts", {"config.json": b"{}", "model.safetensors": b"weights"})
    _cache_repo(cache, "sesame/csm-1b", {"config.json": b"{}"})  # config only: weights not downloaded
    assert catalogue.cached_repos(cache) == {"eustlb/pocket-tts"}
    assert catalogue.entry("pocket-tts", cache_dir=cache).cached is False  # its codec repo is missing
    _cache_repo(cache, "eustlb/pocket-tts-audio-tokenizer", {"model.safetensors": b"codec"})
    cached = {e.name: e.cached for e in catalogue.models(cache_dir=cache)}
    assert cached == {"pocket-tts": True, "csm-1b": False, "vibevoice-1.5b": False, "vibevoice-7b": False}
    assert catalogue.cached_repos(tmp_path / "no-cache-yet") == set()


def test_a_preview_is_the_planner_ladder_for_the_described_machine():
    ladder = catalogue.preview("csm-1b", PRESETS["gtx1060-6g"], Workload(300, 2))
    assert ladder[0] == make_plan(describe("csm-1b"), PRESETS["gtx1060-6g"], Workload(300, 2))
    assert ladder[-1].device == "cpu"
    with pytest.raises(VesperError, match="does not fit this machine"):
        catalogue.preview("vibevoice-7b", PRESETS["gtx1650-4g"])
