"""Which recording to clone: the voices in the library folder, or any recording file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from inference.paths import voices_dir

RECORDINGS = ("*.wav", "*.flac", "*.ogg")


class VoicePicker(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        """List the library's recordings (the voice library widget adds and removes them)."""
        current = self.voice()
        self.combo.blockSignals(True)
        self.combo.clear()
        folder = voices_dir()
        found = sorted(p for pattern in RECORDINGS for p in folder.glob(f"**/{pattern}")) if folder.is_dir() else []
        for path in found:
            self.combo.addItem(path.stem, str(path))
        self.combo.blockSignals(False)
        if current is not None:
            self.choose(current)

    def choose(self, path: Path) -> None:
        """Select ``path``, adding it to the list if it is a file outside the library."""
        index = self.combo.findData(str(path))
        if index < 0:
            self.combo.addItem(path.stem, str(path))
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def voice(self) -> Path | None:
        data = self.combo.currentData()
        return Path(data) if data else None

    def voice_text(self) -> str | None:
        """The recording's transcript, from a .txt beside it with the same name, if there is one."""
        voice = self.voice()
        transcript = voice.with_suffix(".txt") if voice is not None else None
        if transcript is not None and transcript.is_file():
            return transcript.read_text(encoding="utf-8").strip() or None
        return None

    def _ask_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Voice recording", "", f"Audio ({' '.join(RECORDINGS)})")
        if name:
            self.choose(Path(name))
