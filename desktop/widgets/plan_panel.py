"""The plan panel: this machine, which models fit it, where the chosen model's parts live and why, memory.

It draws a ``PlanViewModel`` and reports the user's choices as signals (model, VRAM limit, level and
dtype overrides) for the main window to turn into worker settings; a new VRAM limit also re-plans
every model under it, off the GUI thread. Worker events
reach it through ``on_event`` (connected to the bridge's event signal).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.plan_view import (
    FIT_WORDS,
    ModelChoice,
    PlanViewModel,
    catalogue_choices,
    hardware_lines,
    limited,
    size_text,
)
from inference.units import GiB, gib
from inference.worker.protocol import Event

AUTOMATIC = "Automatic"


class PlanPanel(QWidget):
    model_chosen = Signal(str)
    vram_limit_changed = Signal(object)  # bytes (int, may exceed 32 bits); 0: no limit
    override_changed = Signal(object, object)  # level, dtype; None: the planner decides
    _previewed = Signal(int, object)  # (request, choices) from the previewing thread

    def __init__(self, view: PlanViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self._request = 0  # the latest preview asked for; older answers are dropped
        self._previewed.connect(self._on_previewed)
        self.hardware = _label("This machine")
        self.models = _table("Models and whether they fit", ["Model", "Fit", "Details", "Download", "Cached"],
                             stretch=2)
        self.models.itemSelectionChanged.connect(self._model_selected)
        self.components = _table("Where each part of the plan lives",
                                 ["Component", "Role", "Size", "Dtype", "Where"], stretch=4)
        self.reasons = _label("Why the planner chose this plan")
        self.memory = _label("Predicted and measured peak memory")
        self.limit = QDoubleSpinBox(decimals=1, minimum=0.0, maximum=1024.0, singleStep=0.5, suffix=" GiB")
        self.limit.setSpecialValueText("No limit")
        self.limit.setAccessibleName("VRAM limit")
        self.limit.setValue(view.vram_limit_bytes / GiB)
        self.limit.valueChanged.connect(lambda gib: self._limit_changed(int(gib * GiB)))
        self.level = _combo("Plan level override", [AUTOMATIC, *view.levels])
        self.dtype = _combo("Precision override", [AUTOMATIC, *view.dtypes])
        self.level.currentTextChanged.connect(self._override)
        self.dtype.currentTextChanged.connect(self._override)

        settings = QFormLayout()
        settings.addRow("VRAM &limit:", self.limit)
        settings.addRow("Plan l&evel:", self.level)
        settings.addRow("&Precision:", self.dtype)
        plan = QVBoxLayout()
        plan.addWidget(self.components)
        plan.addWidget(self.reasons)
        plan.addWidget(self.memory)
        layout = QVBoxLayout(self)
        layout.addWidget(_group("This machine", self.hardware))
        layout.addWidget(_group("Models", self.models))
        layout.addWidget(_group("Current plan", plan))
        layout.addWidget(_group("Settings", settings))
        layout.addStretch(1)
        self.setAccessibleName("Plan panel")
        self.refresh()

    def set_models(self, models: Sequence[ModelChoice]) -> None:
        self.view.update_models(models)
        self.refresh()

    def on_event(self, event: Event) -> None:
        if self.view.observe(event):
            self.memory.setText("\n".join(self.view.memory_lines()))

    def refresh(self) -> None:
        view = self.view
        self.hardware.setText("\n".join(hardware_lines(view.hardware)))
        self.models.blockSignals(True)
        self.models.setRowCount(0)
        _fit_height(self.models)
        for row, (choice, verdict) in enumerate(view.rows()):
            _fill(self.models, row, [choice.name, FIT_WORDS[verdict.fit], verdict.text,
                                     size_text(choice.download_bytes or 0),
                                     "yes" if choice.cached else "no"])
            if choice.name == view.current:
                self.models.selectRow(row)
        self.models.blockSignals(False)
        self._show_plan()

    def _show_plan(self) -> None:
        plan = self.view.plan
        self.components.setRowCount(0)
        _fit_height(self.components)
        for row, c in enumerate(plan.components if plan else ()):
            _fill(self.components, row, [c.name, c.role, gib(c.nbytes), c.dtype, c.placement])
        if plan is None:
            choice = self.view.choice
            self.reasons.setText(choice.refusal if choice else "Choose a model.")
        else:
            self.reasons.setText(f"{plan.model}: {plan.level} on {plan.device}, {plan.dtype}\n"
                                 + "\n".join(f"• {r}" for r in plan.reasons))
        self.memory.setText("\n".join(self.view.memory_lines()))

    def _model_selected(self) -> None:
        rows = self.models.selectionModel().selectedRows()
        if rows:
            name = self.models.item(rows[0].row(), 0).text()
            self.view.select(name)
            self._show_plan()
            self.model_chosen.emit(name)

    def _limit_changed(self, limit: int) -> None:
        """Re-plan every model under the new limit on a thread (a few hundred ms for the catalogue)."""
        self.view.vram_limit_bytes = limit
        self.vram_limit_changed.emit(limit)
        self._request += 1
        request, machine = self._request, limited(self.view.hardware, limit)

        def run() -> None:
            choices = catalogue_choices(machine)
            try:
                self._previewed.emit(request, choices)
            except RuntimeError:  # the panel was closed meanwhile
                pass

        threading.Thread(target=run, name="vesper-plan-preview", daemon=True).start()

    def _on_previewed(self, request: int, choices: list[ModelChoice]) -> None:
        if request == self._request:
            self.set_models(choices)

    def _override(self) -> None:
        level, dtype = self.level.currentText(), self.dtype.currentText()
        self.view.level_override = None if level == AUTOMATIC else level
        self.view.dtype_override = None if dtype == AUTOMATIC else dtype
        self.override_changed.emit(self.view.level_override, self.view.dtype_override)


def _label(name: str) -> QLabel:
    label = QLabel()
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _combo(name: str, items: Sequence[str]) -> QComboBox:
    box = QComboBox()
    box.setAccessibleName(name)
    box.addItems(list(items))
    return box


def _table(name: str, headers: list[str], stretch: int) -> QTableWidget:
    """A read-only table selecting whole rows; column ``stretch`` takes the spare width."""
    table = QTableWidget(0, len(headers))
    table.setAccessibleName(name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setWordWrap(True)
    header = table.horizontalHeader()
    for column in range(len(headers)):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    # A narrower column wraps its text onto more lines: the rows, and so the table, grow to show them all.
    header.sectionResized.connect(lambda *_: (table.resizeRowsToContents(), _fit_height(table)))
    return table


def _fill(table: QTableWidget, row: int, cells: list[str]) -> None:
    table.insertRow(row)
    for column, text in enumerate(cells):
        item = QTableWidgetItem(text)
        item.setToolTip(text)
        table.setItem(row, column, item)
    table.resizeRowToContents(row)
    _fit_height(table)


def _fit_height(table: QTableWidget) -> None:
    """Tall enough for every row: these tables hold a handful, and a scrolled list hides a verdict."""
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(table.horizontalHeader().sizeHint().height() + rows + 2 * table.frameWidth() + 2)


def _group(title: str, content) -> QGroupBox:
    box = QGroupBox(title)
    layout = content if not isinstance(content, QWidget) else QVBoxLayout()
    if isinstance(content, QWidget):
        layout.addWidget(content)
    box.setLayout(layout)
    return box
