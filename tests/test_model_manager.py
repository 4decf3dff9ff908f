"""The model manager: its download state machine driven by real protocol events, the widget listing the
catalogue, showing progress, cancelling, and removing a model from a Hugging Face cache laid out as
huggingface_hub lays it out (blobs, snapshots linking to them, refs)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from desktop.downloads import Downloads, Phase
from desktop.plan_view import FIT_WORDS, ModelChoice, catalogue_choices, verdict
from inference import hf_cache, registry
from inference.catalogue import models
from inference.hardware import PRESETS
from inference.worker.protocol import (
    DownloadProgress,
    JobCancelled,
    JobFailed,
    JobFinished,
    MemoryStats,
    Stage,
    StageStarted,
)


def write_cached_model(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40) -> None:
    """A model in the hub cache's own layout: content-addressed blobs, a snapshot of links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../..") / "blobs" / blob.name)


class RecordingJobs:
    """Stands in for the worker bridge: hands out job ids and remembers what was asked of it."""

    def __init__(self) -> None:
        self.preloaded: list[str] = []
        self.cancelled: list[str] = []

    def preload(self, model: str) -> str:
        self.preloaded.append(model)
        return f"load-{len(self.preloaded)}"

    def cancel(self, job_ids: list[str]) -> None:
        self.cancelled.extend(job_ids)


def catalogue(cache_dir: Path | None = None) -> list[ModelChoice]:
    """The catalogue's models with their plans for a 6 GB laptop."""
    return catalogue_choices(PRESETS["laptop-4050-6g"], cache_dir)


def test_download_progress_then_cancel():
    downloads = Downloads()
    download = downloads.start("csm-1b", "j1")
    assert downloads.observe(StageStarted("j1", Stage.RESOLVING)) is download
    assert download.describe() == "Resolving…" and download.fraction is None
    downloads.observe(StageStarted("j1", Stage.DOWNLOADING))
    downloads.observe(DownloadProgress("j1", "sesame/csm-1b", "model.safetensors", 250, 1000))
    downloads.observe(DownloadProgress("j1", "sesame/csm-1b", "config.json", 0, 0))  # size not announced
    downloads.observe(DownloadProgress("j1", "sesame/csm-1b", "model.safetensors", 500, 1000))
    assert download.fraction == 0.5 and download.describe().endswith("(50%)")
    assert downloads.observe(StageStarted("other", Stage.GENERATING)) is None  # another job's event
    assert downloads.cancel("csm-1b") == "j1" and download.phase is Phase.CANCELLING
    assert downloads.cancel("csm-1b") is None  # already asked
    downloads.observe(DownloadProgress("j1", "sesame/csm-1b", "model.safetensors", 600, 1000))  # in flight
    downloads.observe(JobCancelled("j1"))
    assert download.phase is Phase.CANCELLED and not download.active and download.describe() == "Cancelled."
    assert downloads.observe(JobFinished("j1", "", MemoryStats(0, 0), 0.0)) is None  # ended: stays cancelled


def test_failed_and_finished_downloads():
    downloads = Downloads()
    failed = downloads.start("vibevoice-7b", "a")
    done = downloads.start("pocket-tts", "b")
    downloads.observe(JobFailed("a", "The hub cannot be reached; check the network or turn on offline mode.",
                                True))
    downloads.observe(JobFinished("b", "cpu", MemoryStats(0, 0), 1.0))
    assert failed.phase is Phase.FAILED and "hub cannot be reached" in failed.describe()
    assert done.phase is Phase.DONE


def test_widget_lists_the_catalogue_downloads_and_cancels(qtbot, tmp_path):
    from desktop.plan_view import size_text
    from desktop.widgets.model_manager import STATUS, ModelManager

    jobs = RecordingJobs()
    widget = ModelManager(catalogue(tmp_path / "hub"), jobs, cache_dir=tmp_path / "hub")
    qtbot.addWidget(widget)
    names = [widget.table.item(r, 0).text() for r in range(widget.table.rowCount())]
    assert names == [entry.name for entry in models()]
    assert widget.table.item(0, 2).text() == size_text(models()[0].download_bytes)
    assert widget.table.item(0, 3).text() == "no"
    # The verdicts the plan view gives (checked per preset in test_plan_view), e.g. "✔ fits".
    assert [widget.table.item(r, 1).text() for r in range(len(names))] == [
        FIT_WORDS[verdict(m).fit] for m in widget.models]
    assert [size_text(n) for n in (0, 4096, 12_400_000, 6_220_000_000)] == ["—", "4 kB", "12 MB", "6.2 GB"]

    widget.select("csm-1b")
    assert widget.download_button.isEnabled() and not widget.cancel_button.isEnabled()
    widget.download_button.click()
    assert jobs.preloaded == ["csm-1b"]
    row = names.index("csm-1b")
    widget.on_event(StageStarted("load-1", Stage.DOWNLOADING))
    widget.on_event(DownloadProgress("load-1", "sesame/csm-1b", "model.safetensors", 300, 1200))
    bar = widget.table.cellWidget(row, STATUS)
    assert bar.maximum() == 1000 and bar.value() == 250 and "25%" in bar.format()
    assert widget.cancel_button.isEnabled() and not widget.download_button.isEnabled()

    widget.cancel_button.click()
    assert jobs.cancelled == ["load-1"] and not widget.cancel_button.isEnabled()
    widget.on_event(JobCancelled("load-1"))
    assert widget.table.cellWidget(row, STATUS) is None
    assert widget.table.item(row, STATUS).text() == "Cancelled."
    assert widget.download_button.isEnabled()  # it can be started again

    widget.offline.setChecked(True)
    assert not widget.download_button.isEnabled()


def test_remove_a_model_from_the_cache(qtbot, tmp_path):
    from desktop.widgets.model_manager import ModelManager

    cache = tmp_path / "hub"
    hub_id = registry.specs()["pocket-tts"].hub_id
    # Random bytes: a filesystem may store zeros as a hole, which the cache scan counts as nothing on disk.
    write_cached_model(cache, hub_id, {"config.json": b"{}", "model.safetensors": os.urandom(4096)})
    write_cached_model(cache, "someone/codec", {"model.safetensors": os.urandom(1000)}, commit="c" * 40)
    write_cached_model(cache, "someone/other-model", {"config.json": b"{}"}, commit="b" * 40)
    assert hf_cache.cached_models(cache)[hub_id] >= 4098
    choices = [replace(m, companions=("someone/codec",)) if m.name == "pocket-tts" else m for m in catalogue()]

    widget = ModelManager(choices, RecordingJobs(), cache_dir=cache)
    qtbot.addWidget(widget)
    widget.select("pocket-tts")
    assert widget.remove_button.isEnabled()
    assert widget.table.item(widget.table.currentRow(), 3).text() == "5 kB"  # the model and its codec
    assert widget.remove(widget.selected) >= 5096
    assert "someone/codec" not in hf_cache.cached_models(cache)
    assert not (cache / f"models--{hub_id.replace('/', '--')}").exists()
    assert hub_id not in hf_cache.cached_models(cache) and "someone/other-model" in hf_cache.cached_models(cache)
    assert not widget.remove_button.isEnabled()
    assert hf_cache.remove_model(hub_id, cache) == 0
    assert hf_cache.cached_models(tmp_path / "nothing-here") == {}


def test_every_model_manager_control_has_an_accessible_name(qtbot, tmp_path):
    from PySide6.QtWidgets import QCheckBox, QPushButton

    from desktop.widgets.model_manager import ModelManager

    widget = ModelManager(catalogue(), RecordingJobs(), cache_dir=tmp_path)
    qtbot.addWidget(widget)
    buttons = widget.findChildren(QPushButton) + widget.findChildren(QCheckBox)
    assert len(buttons) >= 5 and all(b.accessibleName() for b in buttons)


@pytest.mark.parametrize("module", ["desktop.widgets.model_manager", "desktop.widgets.recorder",
                                    "desktop.widgets.plan_panel", "desktop.widgets.voice_library",
                                    "inference.hf_cache"])
def test_widgets_and_the_cache_module_do_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)



WEIGHTS = 20 * 2**20  # huggingface_hub reports a file's progress every 10 MiB: this one stops halfway once


@pytest.mark.slow
def test_the_widget_downloads_from_the_hub_with_progress_and_cancels_a_throttled_download(
        qtbot, tmp_path, tiny_checkpoint, monkeypatch):
    """A real worker behind the bridge, a loopback hub: Pocket TTS (the tiny checkpoint under its released
    ids) downloads and loads with the row's bar showing it; CSM's repo (a config and 20 MiB of weights
    bytes, never loaded) trickles in and is cancelled from the widget halfway."""
    from PySide6.QtWidgets import QProgressBar

    from desktop.bridge import WorkerBridge
    from desktop.widgets.model_manager import STATUS, ModelManager
    from inference.worker.protocol import WorkerSettings
    from tests.local_hub import LocalHub, Repo, released_pocket_repos
    from tests.test_first_run import _hub_env

    csm = registry.specs()["csm-1b"].hub_id
    repos = {**released_pocket_repos(tiny_checkpoint("pocket_tts")),
             csm: Repo({"config.json": b'{"model_type": "csm"}', "model.safetensors": os.urandom(WEIGHTS)})}
    cache = tmp_path / "hf" / "hub"
    with LocalHub(repos, throttle=(csm, "model.safetensors")) as hub:
        for name, value in _hub_env(tmp_path, hub.endpoint).items():
            monkeypatch.setenv(name, value)  # what the worker inherits
        bridge = WorkerBridge(WorkerSettings(low_latency=True))
        widget = ModelManager(catalogue(cache), bridge, cache_dir=cache)
        qtbot.addWidget(widget)
        for signal in (bridge.stage_started, bridge.download_progress, bridge.job_finished, bridge.job_failed,
                       bridge.job_cancelled):  # as the main window wires them
            signal.connect(widget.on_event)
        names = [m.name for m in widget.models]
        shown: dict[str, list[tuple[int, str]]] = {"pocket-tts": [], "csm-1b": []}

        def look(event: DownloadProgress) -> None:
            """After the widget took the event in: what the model's row shows."""
            model = "csm-1b" if event.repo_id == csm else "pocket-tts"
            bar = widget.table.cellWidget(names.index(model), STATUS)
            if isinstance(bar, QProgressBar):
                shown[model].append((bar.value(), bar.format()))

        bridge.download_progress.connect(look)
        try:
            widget.select("pocket-tts")
            widget.download_button.click()
            qtbot.waitUntil(lambda: not widget.downloads.by_model["pocket-tts"].active, timeout=180_000)
            row = names.index("pocket-tts")
            assert widget.table.item(row, STATUS).text() == "Downloaded and loaded."
            assert widget.table.item(row, 3).text() != "no"  # on disk now
            assert shown["pocket-tts"] and all(text.startswith("Downloading:") for _, text in shown["pocket-tts"])
            assert shown["pocket-tts"][-1][0] == 1000
            for repo_id, repo in released_pocket_repos(tiny_checkpoint("pocket_tts")).items():
                assert all(f"GET /{repo_id}/resolve/{repo.sha}/{name}" in hub.requests for name in repo.files)

            widget.select("csm-1b")
            widget.download_button.click()
            qtbot.waitUntil(lambda: any(0 < value < 1000 for value, _ in shown["csm-1b"]), timeout=120_000)
            assert widget.cancel_button.isEnabled()
            widget.cancel_button.click()
            qtbot.waitUntil(lambda: not widget.downloads.by_model["csm-1b"].active, timeout=60_000)
        finally:
            bridge.shutdown()
    row = names.index("csm-1b")
    assert widget.downloads.by_model["csm-1b"].phase is Phase.CANCELLED
    assert widget.table.item(row, STATUS).text() == "Cancelled." and widget.download_button.isEnabled()
    files = [p for p in cache.rglob("*") if p.is_file() or p.is_symlink()]
    assert files and not [p for p in files if ".incomplete" in p.name]
    csm_cache = cache / f"models--{csm.replace('/', '--')}"
    assert not list(csm_cache.glob("snapshots/*/model.safetensors")) and not (csm_cache / "refs" / "main").exists()
