"""The model manager: the catalogue with download sizes and fit, downloads with progress and cancel,
offline mode, a model from a folder, and removing a model from the Hugging Face cache.

Downloads go through the worker (a ``LoadJob`` submitted by the bridge), so the GUI never fetches
anything itself; ``on_event`` takes the worker's events from the bridge's signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.downloads import Downloads, Phase
from desktop.plan_view import FIT_WORDS, ModelChoice, size_text, verdict
from inference import hf_cache
from inference.worker.protocol import Event

COLUMNS = ["Model", "Fit", "Download", "On disk", "Status"]
STATUS = COLUMNS.index("Status")


class ModelJobs(Protocol):
    """What the model manager asks of the worker bridge."""

    def preload(self, model: str) -> str: ...  # submit a LoadJob; its job id

    def cancel(self, job_ids: list[str]) -> None: ...


class ModelManager(QWidget):
    offline_changed = Signal(bool)  # the worker should (not) use the network: HF_HUB_OFFLINE
    folder_chosen = Signal(Path)  # a checkpoint folder to use as the model

    def __init__(self, models: Sequence[ModelChoice], jobs: ModelJobs, cache_dir: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs, self.cache_dir = jobs, cache_dir
        self.models = list(models)
        self.downloads = Downloads()
        self.on_disk: dict[str, int] = {}
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setAccessibleName("Models")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._enable)
        self.detail = QLabel()
        self.detail.setAccessibleName("Selected model")
        self.detail.setWordWrap(True)
        self.download_button = _button("&Download", "Download the selected model", self.download)
        self.cancel_button = _button("&Cancel download", "Cancel the selected model's download", self.cancel)
        self.remove_button = _button("&Remove from disk…", "Remove the selected model from the cache",
                                     self.ask_remove)
        self.folder_button = _button("Load from &folder…", "Use a model from a folder", self._choose_folder)
        self.offline = QCheckBox("&Offline mode: never use the network")
        self.offline.setAccessibleName("Offline mode")
        self.offline.toggled.connect(self.offline_changed)
        self.offline.toggled.connect(self._enable)
        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.remove_button, self.folder_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        layout.addWidget(self.offline)
        self.setAccessibleName("Model manager")
        self.refresh()

    @property
    def selected(self) -> ModelChoice | None:
        rows = self.table.selectionModel().selectedRows()
        return self.models[rows[0].row()] if rows else None

    def select(self, name: str) -> None:
        self.table.selectRow(next(i for i, m in enumerate(self.models) if m.name == name))

    def set_models(self, models: Sequence[ModelChoice]) -> None:
        self.models = list(models)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the cache and redraw every row, keeping the selection."""
        chosen = self.selected.name if self.selected else None
        self.on_disk = hf_cache.cached_models(self.cache_dir)
        self.table.setRowCount(0)
        for row, model in enumerate(self.models):
            self.table.insertRow(row)
            disk = self._disk_bytes(model)
            cells = [model.name, FIT_WORDS[verdict(model).fit], size_text(model.download_bytes or 0),
                     size_text(disk) if disk else "no", ""]
            for column, text in enumerate(cells):
                self.table.setItem(row, column, QTableWidgetItem(text))
            self._show_download(row)
        if chosen is not None:
            self.select(chosen)
        self._enable()

    def _show_download(self, row: int) -> None:
        download = self.downloads.by_model.get(self.models[row].name)
        if download is None or not download.active:
            self.table.removeCellWidget(row, STATUS)
            self.table.item(row, STATUS).setText(download.describe() if download else "")
            return
        bar = self.table.cellWidget(row, STATUS)
        if not isinstance(bar, QProgressBar):
            bar = QProgressBar()
            bar.setAccessibleName(f"Download of {self.models[row].name}")
            self.table.setCellWidget(row, STATUS, bar)
        fraction = download.fraction
        bar.setRange(0, 0 if fraction is None else 1000)  # busy until the hub has announced a size
        bar.setValue(int(1000 * (fraction or 0)))
        bar.setFormat(download.describe())

    def _enable(self) -> None:
        model = self.selected
        download = self.downloads.by_model.get(model.name) if model else None
        running = download is not None and download.active
        self.download_button.setEnabled(model is not None and not running and model.hub_id is not None
                                        and not self.offline.isChecked())
        self.cancel_button.setEnabled(running and download.phase is Phase.RUNNING)
        self.remove_button.setEnabled(model is not None and not running and bool(self._disk_bytes(model)))
        self.detail.setText(f"{model.name}: {model.description}\n{verdict(model).text}" if model else
                            "Choose a model to download, remove or check.")

    def download(self) -> None:
        model = self.selected
        if model is not None:
            self.downloads.start(model.name, self.jobs.preload(model.name))
            self._row_changed(model.name)

    def cancel(self) -> None:
        model = self.selected
        job_id = self.downloads.cancel(model.name) if model else None
        if job_id is not None:
            self.jobs.cancel([job_id])
            self._row_changed(model.name)

    def on_event(self, event: Event) -> None:
        download = self.downloads.observe(event)
        if download is None:
            return
        if download.active:
            self._row_changed(download.model)
        else:
            self.refresh()  # finished, cancelled or failed: what is on disk may have changed

    def remove(self, model: ModelChoice) -> int:
        """Delete the model and its companion repos from the cache; the bytes freed."""
        freed = sum(hf_cache.remove_model(repo, self.cache_dir) for repo in model.repos)
        self.refresh()
        return freed

    def ask_remove(self) -> None:
        model = self.selected
        if model is None:
            return
        size = self._disk_bytes(model)
        answer = QMessageBox.question(self, "Remove model",
                                      f"Remove {model.name} ({size_text(size)}) from the disk? It is downloaded "
                                      "again the next time it is used.",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(model)

    def _disk_bytes(self, model: ModelChoice) -> int:
        """The model's repos (its own and companions) in the cache."""
        return sum(self.on_disk.get(repo, 0) for repo in model.repos)

    def _row_changed(self, name: str) -> None:
        self._show_download(next(i for i, m in enumerate(self.models) if m.name == name))
        self._enable()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (config, safetensors weights, processor)")
        if folder:
            self.folder_chosen.emit(Path(folder))


def _button(text: str, name: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(name)
    button.clicked.connect(slot)
    return button
