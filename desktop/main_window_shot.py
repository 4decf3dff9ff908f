"""The main window during a narration, for ``python -m desktop.screenshots OUT [--model M]``.

Grabbed with some chunks done, one generating, the rest pending. The model may be a checkpoint folder:
``python -m tests.tiny_models /tmp/tiny`` builds one that needs no download.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from desktop.bridge import WorkerBridge
from desktop.main_window import MainWindow
from desktop.settings import Settings
from desktop.state.narration import ChunkStatus
from inference.worker.protocol import WorkerSettings

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "voices" / "sample.wav"
TEXT = """Chapter one. The lighthouse keeper climbed the stairs at dusk, as she had every evening for thirty years.

The lamp was older than she was. She cleaned the glass, trimmed the wick and waited for the first ship.

Far out, a light answered hers. Someone was coming home tonight.

She wrote it in the log: one ship, clear weather, a calm sea."""
SIZE = (1100, 720)
TIMEOUT_MS = 300_000


def _null_speaker(folder: Path) -> None:
    """Playback goes to ALSA's null device: a display server for screenshots often has no sound card."""
    conf = folder / "asound.conf"
    conf.write_text("</usr/share/alsa/alsa.conf>\npcm.!default { type null }\n")
    os.environ["ALSA_CONFIG_PATH"] = str(conf)


def main_window_shot(out: Path, model: str) -> bool:
    """The main window during a narration with ``model`` into ``out/main-window.png``; False if it got none."""
    scratch = tempfile.TemporaryDirectory()
    _null_speaker(Path(scratch.name))
    os.environ["VESPER_HOME"] = str(Path(scratch.name) / "home")  # the picture's settings, not the user's
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    window = MainWindow(WorkerBridge(WorkerSettings(low_latency=True)), Settings())
    window.resize(*SIZE)
    window.model.choose(model)
    window.voice.choose(SAMPLE)
    window.editor.set_text(TEXT)
    window.show()
    shots: dict[str, object] = {}

    def grab_during_narration() -> None:
        """Once two chunks are done and the third is streaming: the list shows every status."""
        statuses = [r.status for r in window.controller.state.rows]
        if "main-window" not in shots and statuses.count(ChunkStatus.DONE) >= 2 and ChunkStatus.GENERATING in statuses:
            window.chunks.table.setCurrentCell(0, 0)
            shots["main-window"] = window.grab()
            window.controller.stop()

    window.bridge.chunk_piece.connect(lambda _event: QTimer.singleShot(50, grab_during_narration))
    window.controller.busy_changed.connect(lambda busy: busy or QTimer.singleShot(100, app.quit))
    QTimer.singleShot(500, window.narrate_action.trigger)
    QTimer.singleShot(TIMEOUT_MS, app.quit)
    app.exec()
    for name, pixmap in shots.items():
        pixmap.save(str(out / f"{name}.png"))
        print(out / f"{name}.png")
    window.player.close_output()
    window.bridge.shutdown()
    return "main-window" in shots


