"""Which model speaks: a registered name, a hub id typed in, or a local checkpoint folder."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from inference.defaults import DEFAULT_MODEL


class ModelPicker(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox(self)
        self.combo.setEditable(True)
        self.combo.setAccessibleName("Model")
        self.combo.setMinimumContentsLength(14)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.addItem(DEFAULT_MODEL, DEFAULT_MODEL)
        self.combo.currentTextChanged.connect(lambda _t: self.changed.emit())
        self.folder = QPushButton("Folder…", self)
        self.folder.setAccessibleName("Load a model from a folder")
        self.folder.clicked.connect(self._ask_folder)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.folder)

    def model(self) -> str:
        """What the worker resolves: the item's name, or whatever was typed (a hub id or a folder)."""
        index = self.combo.findText(self.combo.currentText())
        data = self.combo.itemData(index) if index >= 0 else None
        return str(data or self.combo.currentText().strip() or DEFAULT_MODEL)

    def choose(self, model: str) -> None:
        if self.combo.findData(model) < 0:
            self.combo.addItem(model, model)
        self.combo.setCurrentIndex(self.combo.findData(model))

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model checkpoint folder")
        if folder:
            self.choose(folder)
