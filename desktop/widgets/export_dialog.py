"""Where and how to export the narration: format, mastering preset, subtitles, metadata."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from desktop.export import FORMATS, PRESETS, ExportRequest
from inference.narration.mastering import Mode

PRESET_NAMES = {Mode.PODCAST: "Podcast (-16 LUFS)", Mode.ACX: "ACX audiobook (checks the ACX rules)",
                Mode.NONE: "None (as generated)"}


class ExportDialog(QDialog):
    def __init__(self, folder: Path, fmt: str, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export narration")
        self.format = QComboBox(self)
        self.format.setAccessibleName("Export format")
        self.format.addItems(FORMATS)
        self.format.setCurrentText(fmt if fmt in FORMATS else "M4B")
        self.format.currentTextChanged.connect(self._retarget)
        self.preset = QComboBox(self)
        self.preset.setAccessibleName("Mastering preset")
        for mode in PRESETS:
            self.preset.addItem(PRESET_NAMES[mode], mode)
        self.subtitles = QCheckBox("Write subtitles (.srt) beside the audio", self)
        self.subtitles.setAccessibleName("Write subtitles")
        self.title = QLineEdit(title, self)
        self.title.setAccessibleName("Title")
        self.author = QLineEdit(self)
        self.author.setAccessibleName("Author")
        self.path = QLineEdit(str(folder / f"narration.{self.format.currentText().lower()}"), self)
        self.path.setAccessibleName("Export file")
        self.path.setMinimumWidth(self.path.fontMetrics().horizontalAdvance(self.path.text()) + 24)
        browse = QPushButton("Browse…", self)
        browse.setAccessibleName("Choose the export file")
        browse.clicked.connect(self._ask_path)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel,
                                   self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Mastering", self.preset)
        form.addRow("", self.subtitles)
        form.addRow("Title", self.title)
        form.addRow("Author", self.author)
        form.addRow("File", where)
        form.addRow(buttons)

    def request(self) -> ExportRequest:
        return ExportRequest(Path(self.path.text()), self.format.currentText(), Mode(self.preset.currentData()),
                             self.subtitles.isChecked(), self.title.text(), self.author.text())

    def _retarget(self, fmt: str) -> None:
        self.path.setText(str(Path(self.path.text()).with_suffix(f".{fmt.lower()}")))

    def _ask_path(self) -> None:
        fmt = self.format.currentText()
        name, _ = QFileDialog.getSaveFileName(self, "Export", self.path.text(), f"{fmt} (*.{fmt.lower()})")
        if name:
            self.path.setText(name)
