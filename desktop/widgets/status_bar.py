"""GPU, live memory, the plan and the latest notice, drawn from a ``StatusModel``."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QLabel, QStatusBar, QWidget

from desktop.state.status import StatusModel


class StatusBar(QStatusBar):
    def __init__(self, model: StatusModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.gpu_label = QLabel(self)
        self.gpu_label.setAccessibleName("GPU")
        self.memory_label = QLabel(self)
        self.memory_label.setAccessibleName("Memory in use")
        self.plan_label = QLabel(self)
        self.plan_label.setAccessibleName("Current plan")
        for index, label in enumerate((self.gpu_label, self.memory_label, self.plan_label)):
            if index:
                self.addPermanentWidget(_separator())
            label.setContentsMargins(4, 0, 4, 0)
            self.addPermanentWidget(label)
        self.setAccessibleName("Status")
        self.refresh()

    def apply(self, event: object) -> None:
        """One worker event in; a notice it carries stays in the bar's message area until the next one."""
        notice = self.model.apply(event)
        if notice:
            self.showMessage(notice)
        self.refresh()

    def refresh(self) -> None:
        self.gpu_label.setText(self.model.gpu_name)
        self.memory_label.setText(self.model.memory_text)
        self.plan_label.setText(self.model.plan_text)


def _separator() -> QFrame:
    """A thin vertical line between two of the bar's figures, so they do not read as one."""
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line
