"""The first run, as a new user meets it: README's main command downloads Pocket TTS and its codec from
the hub (here a loopback hub serving the tiny checkpoint under the registered ids), shows the download,
writes audio, and works offline afterwards; a cancelled download leaves nothing a later run mistakes
for a complete file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from inference.adapters.pocket_tts import CODEC_HUB_ID
from inference.worker.client import WorkerClient
from inference.worker.protocol import (
    TERMINAL_EVENTS,
    ChunkReady,
    DownloadProgress,
    JobCancelled,
    SpeakJob,
    Stage,
    StageStarted,
    WorkerSettings,
)
from tests.conftest import REPO, SAMPLE_VOICE
from tests.local_hub import POCKET_HUB_ID, LocalHub, released_pocket_repos
from tests.tiny_models import pocket_tts

WIDE = 512  # hidden size of a Pocket checkpoint whose weights (17 MB) arrive in two pieces of up to 10 MB


def _hub_env(tmp_path: Path, endpoint: str | None) -> dict[str, str]:
    """A first run's environment: an empty cache, the hub reachable (conftest turned offline mode on)."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "VESPER_HOME": str(tmp_path / "vesper"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "0" if endpoint else "1", "TRANSFORMERS_OFFLINE": "0" if endpoint else "1"}
    env.pop("VESPER_FAULT", None)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def _say(env: dict[str, str], out: Path, *options: str) -> subprocess.CompletedProcess:
    """README's main command (the default model), with this interpreter."""
    return subprocess.run([sys.executable, "launch.py", "say", "Hello! This is Vesper.", "--voice",
                           str(SAMPLE_VOICE.relative_to(REPO)), "--out", str(out), *options],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file() or p.is_symlink()]


def test_first_run_downloads_with_progress_then_works_offline(tmp_path, tiny_checkpoint):
    repos = released_pocket_repos(tiny_checkpoint("pocket_tts"))
    with LocalHub(repos) as hub:
        first = _say(_hub_env(tmp_path, hub.endpoint), tmp_path / "first.wav")
    assert first.returncode == 0, first.stderr
    assert "vesper: downloading: eustlb/pocket-tts, eustlb/pocket-tts-audio-tokenizer" in first.stderr
    for repo_id, repo in repos.items():
        for name in repo.files:
            assert f"downloading {repo_id}/{name} (" in first.stderr  # the companion's files too
            assert f"GET /{repo_id}/resolve/{repo.sha}/{name}" in hub.requests
    assert "chunk 1/1" in first.stderr and "Wrote" in first.stdout
    audio, rate = sf.read(tmp_path / "first.wav")
    assert rate == 24000 and len(audio) > 0
    assert not [p for p in _cache_files(tmp_path) if p.name.endswith(".incomplete")]

    again = _say(_hub_env(tmp_path, None), tmp_path / "again.wav", "-v")  # the hub is gone, offline mode on
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stderr and "vesper: loading: pocket-tts" in again.stderr
    assert sf.read(tmp_path / "again.wav")[0].size > 0
    # -v: log lines on stderr, the worker's among them (forwarded through the client); all in the log file.
    assert "inference.worker.remote: inference.worker.process: job" in again.stderr
    log = (tmp_path / "vesper" / "logs" / "vesper.log").read_text()
    assert "started worker" in log and "inference.worker.process: loaded" in log


def test_offline_first_run_names_every_repo_to_download(tmp_path):
    result = _say(_hub_env(tmp_path, None), tmp_path / "never.wav")
    assert result.returncode == 2 and not (tmp_path / "never.wav").exists()
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert f"`hf download {POCKET_HUB_ID}` and `hf download {CODEC_HUB_ID}`" in line


def test_a_first_run_without_network_names_every_repo_to_download(tmp_path):
    """No network at all (nothing answers where the hub should be): the same advice, not an internal error."""
    result = _say(_hub_env(tmp_path, "http://127.0.0.1:9"), tmp_path / "never.wav")  # discard port: closed
    assert result.returncode == 2 and not (tmp_path / "never.wav").exists()
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "the hub cannot be reached" in line and f"`hf download {CODEC_HUB_ID}`" in line


@pytest.fixture
def wide_checkpoint(tmp_path) -> Path:
    return pocket_tts.build(tmp_path / "wide", hidden_size=WIDE)


def test_a_cancelled_download_leaves_no_file_a_later_run_trusts(tmp_path, wide_checkpoint, monkeypatch):
    repos = released_pocket_repos(wide_checkpoint)
    weights = repos[POCKET_HUB_ID].files["model.safetensors"]
    assert len(weights) > 10 * 2**20  # huggingface_hub reports a file's progress every 10 MiB
    model_cache = tmp_path / "hf" / "hub" / "models--eustlb--pocket-tts"
    with LocalHub(repos, throttle=(POCKET_HUB_ID, "model.safetensors")) as hub:
        for name, value in _hub_env(tmp_path, hub.endpoint).items():
            monkeypatch.setenv(name, value)  # what the spawned worker inherits
        with WorkerClient(WorkerSettings(low_latency=True)) as client:
            job_id = client.preload("pocket-tts")
            partial: list[int] = []
            for event in client.events(240):
                if isinstance(event, DownloadProgress) and event.repo_id == POCKET_HUB_ID \
                        and event.filename == "model.safetensors" and 0 < event.done_bytes < event.total_bytes \
                        and not partial:
                    partial.append(event.done_bytes)
                    client.cancel(job_id)
                if event.job_id == job_id and isinstance(event, TERMINAL_EVENTS):
                    break
            assert isinstance(event, JobCancelled) and partial
            assert not [p for p in _cache_files(tmp_path) if ".incomplete" in p.name]
            assert not list(model_cache.glob("snapshots/*/model.safetensors"))
            assert not (model_cache / "refs" / "main").exists()  # the snapshot is not marked complete

            seen = []  # the same worker, still usable, finishes the download and loads the model
            result = client.speak(SpeakJob("Hello there.", SAMPLE_VOICE), seen.append, timeout=240)
    stages = [e.stage for e in seen if isinstance(e, StageStarted)]
    assert Stage.DOWNLOADING in stages and Stage.LOADING in stages
    weights_progress = [e.done_bytes for e in seen if isinstance(e, DownloadProgress)
                        and (e.repo_id, e.filename) == (POCKET_HUB_ID, "model.safetensors")]
    assert weights_progress[0] == 0 and 0 < weights_progress[1] < len(weights) and weights_progress[-1] == len(weights)
    assert result.chunks and all(isinstance(c, ChunkReady) and c.audio.size for c in result.chunks)
    (cached,) = model_cache.glob("snapshots/*/model.safetensors")
    assert hashlib.sha256(cached.read_bytes()).digest() == hashlib.sha256(weights).digest()
