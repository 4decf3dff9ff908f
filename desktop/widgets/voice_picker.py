"""Which voice to clone: the voices in the library (shared with ``vesper voices``), or any recording file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from inference.voice_library import Voice, VoiceLibrary, voice_from_file

RECORDINGS = "Audio (*.wav *.flac *.ogg)"


class VoicePicker(QWidget):
    changed = Signal()

    def __init__(self, library: VoiceLibrary | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library or VoiceLibrary()
        self.combo = QComboBox(self)
        self.combo.setAccessibleName("Voice")
        self.combo.setMinimumContentsLength(14)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.browse = QPushButton("Recording…", self)
        self.browse.setAccessibleName("Choose a voice recording file")
        self.browse.clicked.connect(self._ask_file)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse)
        self.refresh()

    def refresh(self) -> None:
        """List the library's voices again (after the recorder or the library changed them)."""
        current = self.voice()
        self.combo.blockSignals(True)
        self.combo.clear()
        for voice in self.library.list():
            self._add(voice)
        self.combo.blockSignals(False)
        if current is not None and current.recording.is_file():  # still there (a renamed voice moved)
            self.choose(current)

    def choose(self, voice: Voice | Path) -> None:
        """Select a library voice, or a recording file (its transcript from a .txt beside it, if any)."""
        index = self.combo.findData(str(voice if isinstance(voice, Path) else voice.recording))
        if index < 0:
            voice = _file_voice(voice) if isinstance(voice, Path) else voice
            self._add(voice)
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def voice(self) -> Voice | None:
        data = self.combo.itemData(self.combo.currentIndex(), VOICE_ROLE)
        return data if isinstance(data, Voice) else None

    def _add(self, voice: Voice) -> None:
        self.combo.addItem(voice.name, str(voice.recording))
        self.combo.setItemData(self.combo.count() - 1, voice, VOICE_ROLE)

    def _ask_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Voice recording", "", RECORDINGS)
        if name:
            self.choose(Path(name))


VOICE_ROLE = Qt.ItemDataRole.UserRole + 1  # the Voice itself, beside its recording's path (UserRole)


def _file_voice(recording: Path) -> Voice:
    transcript = recording.with_suffix(".txt")
    text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
    return voice_from_file(recording, text or None)
