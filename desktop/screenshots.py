"""Render the window's parts into PNGs: ``xvfb-run -a python -m desktop.screenshots OUT [--model M]``.

The main window during a narration with ``--model`` (``desktop/main_window_shot.py``), and:

The recorder (on ALSA's file plugin as the microphone) is shown mid-take and reviewing a take with
problems (espeak-ng speech, clipped and with noise added); the voice library with two voices in a
temporary VESPER_HOME; the plan panel and the model manager for a
6 GB laptop preset, from the catalogue. The memory and download figures in those two come from
events the script makes up for the picture, not from a run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PySide6.QtWidgets import QApplication, QWidget

from desktop.main_window_shot import main_window_shot
from desktop.plan_view import ModelChoice, PlanViewModel, catalogue_choices
from desktop.recorder_state import Phase
from desktop.widgets.model_manager import ModelManager
from desktop.widgets.plan_panel import PlanPanel
from desktop.widgets.recorder import RecorderWidget
from desktop.widgets.voice_library import VoiceLibraryWidget
from inference import hardware
from inference.audio import write_wav
from inference.defaults import DEFAULT_MODEL
from inference.voice_library import VoiceLibrary
from inference.voice_quality import analyse
from inference.worker.protocol import DownloadProgress, JobFinished, MemorySample, MemoryStats, Stage, StageStarted

PRESET = "laptop-4050-6g"
ALSA_CONF = """</usr/share/alsa/alsa.conf>
pcm.!default {{
  type asym
  playback.pcm "null"
  capture.pcm {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
}}
"""
SPEECH = ("This is my voice, recorded for Vesper. I read a few sentences at an even pace, close to the "
          "microphone, in a quiet room.")


def speech(rate: int, text: str = SPEECH) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        audio, espeak_rate = sf.read(path, dtype="float32")
    import soxr

    return soxr.resample(audio / np.abs(audio).max() * 0.5, espeak_rate, rate).astype(np.float32)


def save(widget: QWidget, path: Path, width: int, height: int) -> None:
    widget.resize(width, height)
    widget.show()
    QApplication.processEvents()
    widget.grab().save(str(path))
    print(path)


def recorder_shots(out: Path, library: VoiceLibrary) -> None:
    rate = 48000
    take = speech(rate)
    recording = RecorderWidget(library, model_rate=24000)
    recording.state.start(rate)
    while recording.state.phase is Phase.COUNTDOWN:
        recording.state.tick()
    recording.state.add(take[: int(4.2 * rate)])
    recording._show()
    save(recording, out / "recorder-recording.png", 640, 240)

    review = RecorderWidget(library, model_rate=24000)
    noise = 0.02 * np.random.default_rng(0).standard_normal(len(take) + rate).astype(np.float32)
    harsh = np.clip(np.concatenate([np.zeros(rate // 2), take * 6, np.zeros(rate // 2)]) + noise, -1, 1)
    review.state.review(analyse(harsh[: int(3.5 * rate)], rate, review.state.model_rate))
    review.name_edit.setText("Kitchen take")
    review._show()
    save(review, out / "recorder-quality.png", 640, 290)


def library_shot(out: Path, library: VoiceLibrary, folder: Path) -> None:
    """Two voices saved the way the recorder saves them (a trimmed espeak-ng take each)."""
    for name, text in (("Narrator", SPEECH), ("Morning voice", "Good morning. This is a second voice, read "
                                                               "a little faster, for the dialogue parts.")):
        take = analyse(speech(24000, text), 24000)
        write_wav(folder / "take.wav", take.audio, take.sample_rate)
        library.add(name, folder / "take.wav", text)
    widget = VoiceLibraryWidget(library)
    widget.refresh("Narrator")
    save(widget, out / "voice-library.png", 520, 260)


def plan_shots(out: Path, models: list[ModelChoice]) -> None:
    view = PlanViewModel(hardware.PRESETS[PRESET], models, current="vibevoice-1.5b")
    panel = PlanPanel(view)
    gib = 1024**3
    panel.on_event(MemorySample("demo", 3 * gib, cuda_reserved_bytes=int(4.3 * gib), nvml_used_bytes=int(5.1 * gib),
                                limit_bytes=6 * gib))
    panel.on_event(JobFinished("demo", "streamed on cuda:0, batch 1",
                               MemoryStats(3 * gib, 3 * gib, cuda_peak_reserved_bytes=int(4.4 * gib)), 12.0))
    panel.resize(1000, 790)
    panel.show()
    QApplication.processEvents()  # the tables fit their rows to this width
    save(panel, out / "plan-panel.png", 1000, max(790, panel.sizeHint().height()))  # the window scrolls it

    class Jobs:
        def preload(self, model: str) -> str:
            return f"load-{model}"

        def cancel(self, job_ids: list[str]) -> None:
            pass

    manager = ModelManager(models, Jobs())
    manager.select("csm-1b")
    manager.download()
    manager.on_event(StageStarted("load-csm-1b", Stage.DOWNLOADING))
    size = manager.selected.download_bytes  # the catalogue's size, so the row and its bar agree
    manager.on_event(DownloadProgress("load-csm-1b", manager.selected.hub_id, "model.safetensors", int(0.4 * size),
                                      size))
    save(manager, out / "model-manager.png", 820, 380)


def virtual_microphone(folder: Path) -> None:
    """ALSA's file plugin as the default capture device, so the pictures look the same on every machine."""
    import sounddevice as sd

    (folder / "mic.raw").write_bytes(b"")
    conf = folder / "asound.conf"
    conf.write_text(ALSA_CONF.format(mic=folder / "mic.raw"))
    os.environ["ALSA_CONFIG_PATH"] = str(conf)
    sd._terminate()  # PortAudio re-reads the ALSA configuration
    sd._initialize()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/screenshots"))
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the main window's model: a name or a checkpoint folder")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        virtual_microphone(Path(folder))
        os.environ["VESPER_HOME"] = str(Path(folder) / "home")  # the pictures' voices, not the user's
        library = VoiceLibrary()
        recorder_shots(out, library)
        library_shot(out, library, Path(folder))
    plan_shots(out, catalogue_choices(hardware.PRESETS[PRESET]))
    app.processEvents()
    return 0 if main_window_shot(out, args.model) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
