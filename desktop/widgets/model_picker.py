"""Which model speaks: a registered name, a hub id typed in, or a local checkpoint folder."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

from desktop.model_fit import ModelFit
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
        self.combo.currentTextChanged.connect(self._selected)
        self.verdict = QLabel(self)
        self.verdict.setAccessibleName("Where the model would run")
        self._fits: dict[str, ModelFit] = {}
        self.folder = QPushButton("Folder…", self)
        self.folder.setAccessibleName("Load a model from a folder")
        self.folder.clicked.connect(self._ask_folder)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.verdict)
        layout.addWidget(self.folder)

    def show_fits(self, fits: list[ModelFit]) -> None:
        """List the registered models with whether each is downloaded and fits this machine."""
        current = self.model()
        self._fits = {fit.name: fit for fit in fits}
        self.combo.blockSignals(True)
        for fit in fits:
            if self.combo.findData(fit.name) < 0:
                self.combo.addItem(fit.name, fit.name)
            self.combo.setItemData(self.combo.findData(fit.name), f"{fit.verdict}. {fit.detail}",
                                   Qt.ItemDataRole.ToolTipRole)
        self.combo.blockSignals(False)
        self.choose(current)
        self._selected()
    def model(self) -> str:
        """What the worker resolves: the item's name, or whatever was typed (a hub id or a folder)."""
        index = self.combo.findText(self.combo.currentText())
        data = self.combo.itemData(index) if index >= 0 else None
        return str(data or self.combo.currentText().strip() or DEFAULT_MODEL)

    def choose(self, model: str) -> None:
        if self.combo.findData(model) < 0:
            self.combo.addItem(model, model)
        self.combo.setCurrentIndex(self.combo.findData(model))

    def _selected(self, _text: str = "") -> None:
        fit = self._fits.get(self.model())
        self.verdict.setText(fit.verdict if fit else "")
        self.verdict.setToolTip(fit.detail if fit else "")
        self.changed.emit()

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model checkpoint folder")
        if folder:
            self.choose(folder)
