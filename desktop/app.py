"""``vesper`` with no arguments: the desktop window."""

from __future__ import annotations

import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from desktop.bridge import WorkerBridge
from desktop.main_window import MainWindow
from desktop.settings import Settings
from desktop.widgets.error_dialog import ErrorDialog
from inference import settings as user_settings
from inference.errors import VesperError
from inference.paths import APP
from inference.worker.protocol import WorkerSettings


def worker_settings(options: user_settings.Settings) -> WorkerSettings:
    """The worker's options from the user's settings file, the same ones the command line uses."""
    return WorkerSettings(max_batch=options.micro_batch, low_latency=options.low_latency,
                          voice_cache_size=options.voice_cache_size, vram_limit_bytes=options.vram_limit_bytes)


def _quit_on_interrupt(app: QApplication) -> None:
    """Ctrl+C in the terminal quits cleanly: Python runs signal handlers only between bytecodes, so a
    timer lets it in while Qt's loop waits."""
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    heartbeat = QTimer(app, interval=250)
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start()


def main(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName(APP)
    app.setApplicationDisplayName("Vesper")
    app.setStyle("Fusion")  # follows the system's light or dark colour scheme on every platform
    try:
        options, problem = user_settings.load(), None
    except VesperError as exc:  # a bad settings file: say so, and run on the defaults meanwhile
        options, problem = user_settings.Settings(), str(exc)
    window = MainWindow(WorkerBridge(worker_settings(options)), Settings(), options)
    window.show()
    if problem:
        ErrorDialog(f"{problem} Using the default settings for now.", "", True, window).open()
    _quit_on_interrupt(app)
    status = app.exec()
    window.shutdown()  # the application may quit without closing the window (a signal, the session ending)
    return status
