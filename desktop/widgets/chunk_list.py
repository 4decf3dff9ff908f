"""The narration's chunks by paragraph, with status and takes; click one to hear it, regenerate one.

A failed chunk's status cell carries the reason as its tooltip; the text cell's tooltip names the voice
that says it (``[voice: NAME]`` switches it within a paragraph).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.state.narration import ChunkRow, ChunkStatus, NarrationState

COLUMNS = ("¶", "Status", "Take", "Text")


class ChunkList(QWidget):
    play_requested = Signal(int)  # row
    regenerate_requested = Signal(int)
    take_chosen = Signal(int, int)  # row, take

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setAccessibleName("Chunks")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.cellClicked.connect(lambda row, _col: self.play_requested.emit(row))
        self.table.currentCellChanged.connect(lambda row, *_: self._show_takes(row))
        self.progress_label = QLabel("No narration yet.", self)
        self.progress_label.setAccessibleName("Narration progress")
        self.progress_label.setWordWrap(True)
        self.regenerate_button = QPushButton("Regenerate", self)
        self.regenerate_button.setAccessibleName("Regenerate the selected chunk")
        self.regenerate_button.clicked.connect(self._regenerate)
        self.takes = QComboBox(self)
        self.takes.setAccessibleName("Take of the selected chunk")
        self.takes.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.takes.activated.connect(self._choose)
        bar = QHBoxLayout()
        bar.addWidget(self.regenerate_button)
        bar.addWidget(QLabel("Take:", self))
        bar.addWidget(self.takes)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(bar)
        self._progress: NarrationState | None = None

    def show_progress(self, progress: NarrationState) -> None:
        """Redraw every row (a new or edited narration)."""
        self._progress = progress
        self.table.setRowCount(len(progress.rows))
        for index in range(len(progress.rows)):
            self.update_row(index)
        self.table.resizeRowsToContents()
        self.update_summary()

    def update_row(self, index: int) -> None:
        assert self._progress is not None
        row = self._progress.rows[index]
        for column, value in enumerate(_cells(row)):
            item = self.table.item(index, column)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(index, column, item)
            item.setText(value)
            item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        status = self.table.item(index, 1)
        status.setToolTip(row.reason)
        failed = row.status is ChunkStatus.FAILED
        status.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning) if failed else QIcon())
        self.table.item(index, 3).setToolTip(f"{row.text}\n\nVoice: {row.voice}" if row.voice else row.text)
        if index == self.table.currentRow():
            self._show_takes(index)

    def update_summary(self) -> None:
        if self._progress is not None:
            self.progress_label.setText(self._progress.summary())

    def selected_row(self) -> int | None:
        row = self.table.currentRow()
        return row if row >= 0 else None

    def _show_takes(self, index: int) -> None:
        self.takes.clear()
        if self._progress is None or not 0 <= index < len(self._progress.rows):
            return
        row = self._progress.rows[index]
        if row.status is ChunkStatus.DONE:
            self.takes.addItems([str(n + 1) for n in range(row.takes)])
            self.takes.setCurrentIndex(row.take)

    def _regenerate(self) -> None:
        if (row := self.selected_row()) is not None:
            self.regenerate_requested.emit(row)

    def _choose(self, take: int) -> None:
        if (row := self.selected_row()) is not None and take >= 0:
            self.take_chosen.emit(row, take)


def _cells(row: ChunkRow) -> tuple[str, str, str, str]:
    take = f"{row.take + 1}/{row.takes}" if row.status is ChunkStatus.DONE else "-"
    return str(row.paragraph + 1), row.status.value, take, row.text
