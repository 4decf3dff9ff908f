"""``vesper`` with no arguments: the desktop window."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from desktop.bridge import WorkerBridge
from desktop.main_window import MainWindow
from desktop.settings import Key, Settings
from inference.paths import APP
from inference.worker.protocol import WorkerSettings


def worker_settings(settings: Settings) -> WorkerSettings:
    return WorkerSettings(low_latency=settings.flag(Key.LOW_LATENCY),
                          vram_limit_bytes=settings.number(Key.VRAM_LIMIT_BYTES))


def main(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP)
    app.setApplicationDisplayName("Vesper")
    app.setStyle("Fusion")  # follows the system's light or dark colour scheme on every platform
    settings = Settings()
    window = MainWindow(WorkerBridge(worker_settings(settings)), settings)
    window.show()
    status = app.exec()
    window.shutdown()  # the application may quit without closing the window (a signal, the session ending)
    return status
