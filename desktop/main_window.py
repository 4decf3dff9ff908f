"""The main window: composes the widgets, the bridge and the controller, and wires their signals.

Layout: a toolbar (voice, model, Speak / Narrate / Stop, Export), the text editor beside the chunk
list, the player under them, the status bar at the bottom. The recorder, voice library, plan panel
and model manager come from their own modules as tabs.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from desktop import model_fit
from desktop.bridge import WorkerBridge
from desktop.controller import Controller, Document, VoiceChoice
from desktop.export import export_narration, ready
from desktop.plan_view import PlanViewModel, catalogue_choices
from desktop.settings import Key, Settings
from desktop.state.status import StatusModel
from desktop.widgets.chunk_list import ChunkList
from desktop.widgets.editor import TextEditor
from desktop.widgets.error_dialog import ErrorDialog
from desktop.widgets.export_dialog import ExportDialog
from desktop.widgets.model_manager import ModelManager
from desktop.widgets.model_picker import ModelPicker
from desktop.widgets.plan_panel import PlanPanel
from desktop.widgets.player import PlayerWidget
from desktop.widgets.recorder import RecorderWidget
from desktop.widgets.status_bar import StatusBar
from desktop.widgets.voice_library import VoiceLibraryWidget
from desktop.widgets.voice_picker import VoicePicker
from inference import hardware
from inference import settings as user_settings
from inference.errors import BadInputError, VesperError
from inference.worker import protocol as p

REVISE_MS = 400  # re-cut the chunk list this long after the last keystroke


class MainWindow(QMainWindow):
    def __init__(self, bridge: WorkerBridge, settings: Settings,
                 options: user_settings.Settings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Vesper")
        self.bridge, self.settings = bridge, settings
        options = options or user_settings.Settings()
        machine = hardware.detect()
        self.editor = TextEditor(self)
        self.chunks = ChunkList(self)
        self.player = PlayerWidget(self)
        self.voice = VoicePicker(parent=self)
        self.model = ModelPicker(self)
        self.model.show_fits(model_fit.fits(machine))
        self.status = StatusBar(StatusModel(gpu_name=machine.gpus[0].name if machine.gpus else "CPU only"), self)
        self.setStatusBar(self.status)
        self.controller = Controller(bridge, self.player, options.chunk_chars, self.voice.library, self)
        self._document: Path | None = None  # the file the editor's text came from (names its project)
        self._default_model = options.default_model
        self.tabs = QTabWidget(self)
        self.tabs.setAccessibleName("Sections")
        self.tabs.addTab(self._narration_page(), "Narrate")
        self._sections(machine)
        self.setCentralWidget(self.tabs)
        self._actions()
        self._wire()
        self._restore()
        QTimer.singleShot(0, bridge.start)

    def _sections(self, machine: hardware.Hardware) -> None:
        """The voice library and recorder, the plan panel and the model manager, wired to this window."""
        library = self.voice.library
        self.library = VoiceLibraryWidget(library, self)
        self.recorder = RecorderWidget(library, parent=self)
        self.recorder.saved.connect(lambda voice: (self.library.refresh(voice.name), self.voice.refresh(),
                                                   self.voice.choose(voice)))
        self.library.chosen.connect(lambda voice: voice is not None and self.voice.choose(voice))
        voices = QWidget(self)
        column = QVBoxLayout(voices)
        column.addWidget(self.recorder)
        column.addWidget(self.library, 1)
        models = catalogue_choices(machine)
        self.plan_panel = PlanPanel(PlanViewModel(machine, models, current=self.model.model()), self)
        self.plan_panel.model_chosen.connect(self.model.choose)
        self.model_manager = ModelManager(models, self.bridge, parent=self)
        self.model_manager.folder_chosen.connect(lambda folder: self.model.choose(str(folder)))
        for title, widget in (("Voices", voices), ("Plan", self.plan_panel), ("Models", self.model_manager)):
            scroll = QScrollArea(self)  # a small screen scrolls a tall section instead of growing the window
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget)
            self.tabs.addTab(scroll, title)
        for signal in (self.bridge.stage_started, self.bridge.download_progress, self.bridge.job_started,
                       self.bridge.memory_sample, self.bridge.plan_changed, self.bridge.job_finished,
                       self.bridge.job_failed, self.bridge.job_cancelled):
            signal.connect(self.plan_panel.on_event)
            signal.connect(self.model_manager.on_event)

    def _narration_page(self) -> QWidget:
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.editor)
        split.addWidget(self.chunks)
        split.setSizes([520, 480])
        choices = QGridLayout()
        for row, (text, picker) in enumerate((("Voice", self.voice), ("Model", self.model))):
            label = QLabel(text, self)
            label.setBuddy(picker.combo)
            choices.addWidget(label, row, 0)
            choices.addWidget(picker, row, 1)
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.addLayout(choices)
        layout.addWidget(split, 1)
        layout.addWidget(self.player)
        return page

    def _actions(self) -> None:
        bar = QToolBar("Narration", self)
        bar.setObjectName("narration-toolbar")
        bar.setAccessibleName("Narration tools")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.speak_action = self._action(bar, "Speak", "Ctrl+Return", self.speak, QStyle.StandardPixmap.SP_MediaPlay)
        self.narrate_action = self._action(bar, "Narrate", "Ctrl+Shift+Return", self.narrate,
                                           QStyle.StandardPixmap.SP_MediaSeekForward)
        self.stop_action = self._action(bar, "Stop", "Escape", self.stop, QStyle.StandardPixmap.SP_MediaStop)
        self.play_action = self._action(None, "Play/Pause", "Ctrl+Space", self.player.toggle)
        self.record_action = self._action(None, "Record", "Ctrl+R", lambda: self.tabs.setCurrentIndex(1))
        bar.addSeparator()
        self.export_action = self._action(bar, "Export…", "Ctrl+E", self.export,
                                          QStyle.StandardPixmap.SP_DialogSaveButton)
        self.open_action = self._action(None, "Open…", QKeySequence.StandardKey.Open, self.editor._ask_open)
        self.stop_action.setEnabled(False)

    def _action(self, bar: QToolBar | None, text: str, keys, slot,
                icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.setShortcut(QKeySequence(keys))
        action.setToolTip(f"{text.rstrip('…')} ({action.shortcut().toString()})")
        action.triggered.connect(lambda _checked=False: self._guard(slot))
        self.addAction(action)
        if bar is not None:
            bar.addAction(action)
            bar.widgetForAction(action).setAccessibleName(text.rstrip("…"))
        return action

    def _wire(self) -> None:
        c = self.controller
        self._revise = QTimer(self, singleShot=True, interval=REVISE_MS)
        self._revise.timeout.connect(lambda: c.set_text(self.document(), self._choice_or_none()))
        self.editor.edit.textChanged.connect(self._revise.start)
        self.editor.opened.connect(self._opened)
        for picker in (self.voice, self.model):
            picker.changed.connect(self._revise.start)  # other keys: other chunks are done
        c.rows_reset.connect(lambda: self.chunks.show_progress(c.state))
        c.busy_changed.connect(self._busy)
        c.failed.connect(self.show_failure)
        self.chunks.play_requested.connect(c.play_row)
        self.chunks.regenerate_requested.connect(
            lambda row: self._guard(lambda: c.regenerate(row, self.document(), self.choice())))
        self.chunks.take_chosen.connect(c.choose_take)
        self.player.failed.connect(lambda message: self.status.showMessage(message, 15000))
        self.player.play_requested.connect(self._play_narration)
        for signal in (self.bridge.job_started, self.bridge.memory_sample, self.bridge.plan_changed,
                       self.bridge.worker_restarted, self.bridge.notice):
            signal.connect(self.status.apply)

    # Commands.

    def choice(self) -> VoiceChoice:
        voice = self.voice.voice()
        if voice is None:
            raise BadInputError("Choose a voice first: record one (Voices tab) or pick a recording file.")
        return VoiceChoice(voice, self.model.model())

    def document(self) -> Document:
        return Document(self.editor.text(), self.editor.kind, self._document)

    def _choice_or_none(self) -> VoiceChoice | None:
        voice = self.voice.voice()
        return VoiceChoice(voice, self.model.model()) if voice is not None else None

    def _opened(self, path: Path) -> None:
        self._document = path
        self._revise.start()

    def speak(self) -> None:
        self.controller.speak(self.editor.speakable(), self.editor.kind, self.choice())

    def narrate(self) -> None:
        self._revise.stop()
        self.controller.narrate(self.document(), self.choice())

    def stop(self) -> None:
        self.controller.stop()
        self.player.stop()

    def export(self) -> None:
        state = self.controller.state
        ready(state.assembly())
        folder = Path(self.settings.text(Key.LAST_EXPORT_DIR) or Path.home())
        dialog = ExportDialog(folder, self.settings.text(Key.LAST_EXPORT_FORMAT), state.script.title, parent=self)
        if dialog.exec() != ExportDialog.DialogCode.Accepted:
            return
        request = dialog.request()
        written, report = export_narration(request, ready(state.assembly()), state.script)
        self.settings.set(Key.LAST_EXPORT_FORMAT, request.format)
        self.settings.set(Key.LAST_EXPORT_DIR, str(written.parent))
        self.status.showMessage(f"Exported {written.name}; {report.lines()[-1]}", 15000)

    def show_failure(self, event: p.JobFailed) -> None:
        ErrorDialog(event.message, event.detail, event.user_error, self).open()

    def _guard(self, slot) -> None:
        """Run a command; an error the user can fix becomes a message, not a traceback."""
        try:
            slot()
        except VesperError as exc:
            ErrorDialog(str(exc), "", True, self).open()

    def _play_narration(self) -> None:
        if (assembled := self.controller.state.assembled()) is not None:
            self.player.play_audio(*assembled)

    def _busy(self, busy: bool) -> None:
        self.stop_action.setEnabled(busy)
        if not busy:
            self.chunks.update_summary()
            self._revise.start()  # edits made while narrating

    # Persistence and quitting.

    def _restore(self) -> None:
        self.restoreGeometry(self.settings.blob(Key.GEOMETRY))
        self.restoreState(self.settings.blob(Key.WINDOW_STATE))
        if voice := self.settings.text(Key.LAST_VOICE):
            if Path(voice).is_file():
                self.voice.choose(Path(voice))
        self.model.choose(self.settings.text(Key.LAST_MODEL) or self._default_model)

    def _save(self) -> None:
        self.settings.set(Key.GEOMETRY, self.saveGeometry())
        self.settings.set(Key.WINDOW_STATE, self.saveState())
        if (voice := self.voice.voice()) is not None:
            self.settings.set(Key.LAST_VOICE, str(voice.recording))
        self.settings.set(Key.LAST_MODEL, self.model.model())
        self.settings.sync()

    def confirm_quit(self) -> bool:
        """Quitting while a job runs asks first; yes stops the work before the window closes (a narration
        keeps its finished chunks in its project: narrating the same document again resumes)."""
        if not self.controller.busy:
            return True
        answer = QMessageBox.question(self, "Quit Vesper", "A narration is being generated. Stop it and quit?")
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if not self.confirm_quit():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop the work, remember the window, release the sound device and the worker (safe twice)."""
        self.controller.stop()
        self._save()
        self.player.close_output()
        self.bridge.shutdown()

