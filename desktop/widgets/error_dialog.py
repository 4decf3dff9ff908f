"""A worker error as the user reads it: the one-line message, with the diagnostics a click away."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QWidget


class ErrorDialog(QMessageBox):
    def __init__(self, message: str, detail: str, user_error: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Vesper")
        self.setIcon(QMessageBox.Icon.Warning if user_error else QMessageBox.Icon.Critical)
        self.setText(message)
        self.setAccessibleName("Error")
        self.detail = detail
        self.copy_button = None
        if detail:
            self.setDetailedText(detail)
            self.copy_button = self.addButton("Copy diagnostics", QMessageBox.ButtonRole.ActionRole)
            self.copy_button.setAccessibleName("Copy diagnostics to the clipboard")
            self.copy_button.clicked.disconnect()  # an action button would close the box
            self.copy_button.clicked.connect(self.copy_diagnostics)
        self.addButton(QMessageBox.StandardButton.Close)

    def copy_diagnostics(self) -> None:
        QGuiApplication.clipboard().setText(f"{self.text()}\n\n{self.detail}")
