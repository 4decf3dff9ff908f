"""The plan panel's view model: verdicts for every registered model on every hardware preset, from the
real planner's plans, and predicted against measured memory from real worker events."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

from desktop.plan_view import Fit, ModelChoice, PlanPreview, PlanViewModel, catalogue_choices, hardware_lines, verdict
from inference import catalogue, paths, registry
from inference.hardware import PRESETS
from inference.units import GiB
from inference.worker.protocol import (
    JobFinished,
    JobStarted,
    MemorySample,
    MemoryStats,
    Notice,
    PlanChangeCause,
    PlanChanged,
)
from tests.test_planner import EXPECTED

FIT_OF_LEVEL = {"resident": Fit.FITS, "codec-cpu": Fit.FITS, "streamed": Fit.OFFLOAD, "zero3-cpu": Fit.OFFLOAD,
                "streamed-disk": Fit.OFFLOAD, "zero3-nvme": Fit.OFFLOAD, "cpu": Fit.CPU, None: Fit.NO_FIT}


@functools.cache
def choices_for(preset: str) -> tuple[ModelChoice, ...]:
    """What the panel gets for a preset: the catalogue's models with the real planner's plans."""
    return tuple(catalogue_choices(PRESETS[preset]))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Calibration records of the developer's machine must not leak into the verdicts checked here."""
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_verdicts_for_every_preset(preset):
    model = PlanViewModel(PRESETS[preset], choices_for(preset))
    verdicts = {choice.name: v for choice, v in model.rows()}
    for name, v in verdicts.items():
        slow = catalogue.verdict(name, PRESETS[preset]).fit is catalogue.Fit.TOO_SLOW  # as `vesper models` says
        assert v.fit is (Fit.TOO_SLOW if slow else FIT_OF_LEVEL[EXPECTED[(name, preset)]]), (name, preset, v)
        assert v.text.endswith(".")
    if preset == "cpu-16g":
        assert hardware_lines(model.hardware)[0].startswith("No NVIDIA GPU")
    else:
        assert PRESETS[preset].gpus[0].name in hardware_lines(model.hardware)[0]


def test_components_and_reasons_of_an_offloaded_plan():
    [csm] = [c for c in choices_for("gtx1650-4g") if c.name == "csm-1b"]
    plan = csm.plan
    assert plan.level == "streamed" and plan.reasons
    assert any("layers" in c.placement for c in plan.components)  # the backbone is streamed in
    assert 0 < plan.predicted_allocator_bytes < plan.predicted_peak_bytes <= plan.vram_budget_bytes
    assert "RAM" in verdict(csm).text


def test_slower_than_real_time_is_too_slow():
    [csm] = [c for c in choices_for("cpu-16g") if c.name == "csm-1b"]
    slow = ModelChoice(csm.name, plan=PlanPreview(**{**csm.plan.__dict__, "expected_speed": 0.3}))
    assert verdict(slow).fit is Fit.TOO_SLOW and "0.3x" in verdict(slow).text


def test_measured_memory_from_worker_events():
    choices = choices_for("laptop-4060-8g")
    model = PlanViewModel(PRESETS["laptop-4060-8g"], choices, current="csm-1b")
    assert model.plan.model == "csm-1b" and "not yet" in model.memory_lines()[1]
    assert model.observe(JobStarted("j", ("a",), 0, "resident on cuda:0, batch 4", ("fits",), 24000))
    assert model.observe(MemorySample("j", 10, cuda_reserved_bytes=2 * GiB, nvml_used_bytes=3 * GiB,
                                      limit_bytes=6 * GiB))
    assert model.observe(MemorySample("j", 10, cuda_reserved_bytes=1 * GiB, nvml_used_bytes=int(3.5 * GiB)))
    assert model.observe(PlanChanged("j", "resident", "codec-cpu", PlanChangeCause.OUT_OF_MEMORY, 1, "lower"))
    assert model.observe(JobFinished("j", "codec-cpu on cuda:0", MemoryStats(1, 1, cuda_peak_reserved_bytes=
                                                                              int(2.5 * GiB)), 1.0))
    assert not model.observe(Notice("j", "nothing the panel shows"))
    lines = model.memory_lines()
    assert lines[0].startswith("Predicted peak:")
    assert "2.50 GiB allocator" in lines[1] and "3.50 GiB in use" in lines[1] and "limit 6.00 GiB" in lines[1]
    assert lines[2] == "Running: codec-cpu on cuda:0"


def test_the_catalogue_gives_sizes_repos_and_refusals():
    choices = {c.name: c for c in choices_for("gtx1650-4g")}  # a 4 GB card: VibeVoice-7B fits nowhere there
    assert choices["pocket-tts"].companions and all(c.download_bytes > 0 for c in choices.values())
    assert choices["vibevoice-7b"].plan is None and "RAM" in verdict(choices["vibevoice-7b"]).text
    streamed = {c.name: c for c in choices_for("laptop-4060-8g")}["vibevoice-7b"]  # layers read from disk
    assert streamed.plan.level == "streamed-disk" and "RAM and on disk" in verdict(streamed).text


def test_plan_view_does_not_import_torch():
    code = "import sys, desktop.plan_view; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_plan_panel_shows_the_view_and_reports_choices(qtbot):
    from desktop.widgets.plan_panel import PlanPanel

    view = PlanViewModel(PRESETS["gtx1650-4g"], choices_for("gtx1650-4g"))
    panel = PlanPanel(view)
    qtbot.addWidget(panel)
    assert panel.models.rowCount() == len(registry.specs())
    assert "GTX 1650" in panel.hardware.text()
    row = [panel.models.item(r, 0).text() for r in range(panel.models.rowCount())].index("csm-1b")
    with qtbot.waitSignal(panel.model_chosen) as chosen:
        panel.models.selectRow(row)
    assert chosen.args == ["csm-1b"] and panel.components.rowCount() == len(view.plan.components)
    assert "streamed" in panel.reasons.text()

    panel.on_event(MemorySample("j", 1, cuda_reserved_bytes=3 * GiB, nvml_used_bytes=4 * GiB))
    assert "3.00 GiB allocator" in panel.memory.text()
    with qtbot.waitSignal(panel.vram_limit_changed) as limit:
        panel.limit.setValue(1.5)
    assert limit.args == [int(1.5 * GiB)]
    # Under a 1.5 GiB limit every model is planned again: CSM no longer fits on the GPU even streamed.
    qtbot.waitUntil(lambda: view.plan.level == "cpu", timeout=20000)
    assert view.current == "csm-1b" and "too slow" in panel.models.item(row, 1).text()  # CSM on a CPU: RTF 2
    with qtbot.waitSignal(panel.override_changed) as override:
        panel.level.setCurrentText("cpu")
    assert override.args == ["cpu", None] and view.level_override == "cpu"
    assert all(w.accessibleName() for w in (panel.limit, panel.level, panel.dtype, panel.models, panel.components))
