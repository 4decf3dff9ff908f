"""The saved voices: list, play, rename, delete (after asking). The same library `vesper voices` manages."""

from __future__ import annotations

import sounddevice as sd
import soundfile as sf
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.voice_store import Voice, VoiceStore
from inference.errors import VesperError


class VoiceLibraryWidget(QWidget):
    """A list of the library's voices with play, rename and delete; ``chosen`` names the selected voice."""

    chosen = Signal(object)  # the selected Voice, or None

    def __init__(self, store: VoiceStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.voices: list[Voice] = []
        self.list = QListWidget()
        self.list.setAccessibleName("Saved voices")
        self.list.currentRowChanged.connect(self._selected)
        self.detail = QLabel()
        self.detail.setAccessibleName("Selected voice")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.PlainText)
        self.play_button = self._button("&Play", "Play the selected voice", self.play, "Space")
        self.rename_button = self._button("&Rename…", "Rename the selected voice", self.ask_rename, "F2")
        self.delete_button = self._button("&Delete…", "Delete the selected voice", self.ask_delete, "Delete")
        buttons = QHBoxLayout()
        for b in (self.play_button, self.rename_button, self.delete_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        self.setAccessibleName("Voice library")
        self.refresh()

    def _button(self, text: str, name: str, slot, key: str) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(name)
        button.clicked.connect(slot)
        action = QAction(name, self.list, shortcut=QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # keys act on the focused list only
        action.triggered.connect(slot)
        self.list.addAction(action)
        return button

    def refresh(self, select: str | None = None) -> None:
        """Re-read the library; keep (or move to) the voice named ``select``."""
        current = select or (self.current.name if self.current else None)
        self.voices = sorted(self.store.list(), key=lambda v: v.name.lower())
        self.list.blockSignals(True)
        self.list.clear()
        for voice in self.voices:
            item = QListWidgetItem(voice.name)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"Voice {voice.name}")
            self.list.addItem(item)
        self.list.blockSignals(False)
        names = [v.name for v in self.voices]
        self.list.setCurrentRow(names.index(current) if current in names else (0 if names else -1))
        self._selected(self.list.currentRow())

    @property
    def current(self) -> Voice | None:
        row = self.list.currentRow()
        return self.voices[row] if 0 <= row < len(self.voices) else None

    def _selected(self, row: int) -> None:  # noqa: ARG002 - the signal's argument; current reads it
        voice = self.current
        for b in (self.play_button, self.rename_button, self.delete_button):
            b.setEnabled(voice is not None)
        if voice is None:
            self.detail.setText("No voices yet: record one or import a file.")
        else:
            info = sf.info(voice.recording)
            transcript = f"“{voice.transcript}”" if voice.transcript else "no transcript"
            self.detail.setText(f"{info.duration:.1f} s, {info.samplerate} Hz; {transcript}")
        self.chosen.emit(voice)

    def play(self) -> None:
        voice = self.current
        if voice is not None:
            audio, rate = sf.read(voice.recording, dtype="float32")
            sd.play(audio, rate)

    def rename(self, new: str) -> None:
        voice = self.current
        if voice is not None and new.strip() and new.strip() != voice.name:
            self.refresh(self.store.rename(voice.name, new.strip()).name)

    def delete(self) -> None:
        voice = self.current
        if voice is not None:
            self.store.remove(voice.name)
            self.refresh()

    def ask_rename(self) -> None:
        voice = self.current
        if voice is None:
            return
        new, ok = QInputDialog.getText(self, "Rename voice", "New name:", text=voice.name)
        if ok:
            try:
                self.rename(new)
            except (OSError, VesperError) as exc:
                QMessageBox.warning(self, "Voice not renamed", str(exc))

    def ask_delete(self) -> None:
        voice = self.current
        if voice is None:
            return
        answer = QMessageBox.question(self, "Delete voice",
                                      f"Delete the voice “{voice.name}” and its recording? This cannot be undone.",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete()
