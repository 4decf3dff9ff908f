"""The text being narrated: paste or type it, or open a .txt / .md file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from desktop.widgets.error_dialog import ErrorDialog
from inference.errors import VesperError
from inference.narration.sources import kind_of, read_source

OPENABLE = "Text, Markdown or EPUB (*.txt *.md *.markdown *.epub)"


class TextEditor(QWidget):
    opened = Signal(Path)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QPlainTextEdit(self)
        self.edit.setAccessibleName("Narration text")
        self.edit.setPlaceholderText("Paste or type the text to narrate; a blank line separates paragraphs.")
        self.open_button = QPushButton("Open…", self)
        self.open_button.setAccessibleName("Open a text file")
        self.open_button.clicked.connect(self._ask_open)
        self.path_label = QLabel("", self)
        self.kind = "text"  # how the narration reads the editor's text: "text" or "markdown"
        bar = QHBoxLayout()
        bar.addWidget(self.open_button)
        bar.addWidget(self.path_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.edit, 1)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)

    def open_file(self, path: Path) -> None:
        """Load a source file: text and Markdown as written, an EPUB as its paragraphs (chapter titles
        first); anything unreadable is a ``BadInputError`` from the narration package's reader."""
        document = read_source(path)  # checks it reads, and it is the only way into an EPUB
        kind = kind_of(path)
        if kind == "epub":  # the editor holds the book's text; the narration reads it as plain text
            text, kind = "\n\n".join(part for chapter in document.chapters
                                      for part in (chapter.title, *(b.text for b in chapter.blocks)) if part), "text"
        else:
            text = "\n".join(document.lines)
        self.kind = kind
        self.set_text(text)
        self.path_label.setText(path.name)
        self.opened.emit(path)

    def speakable(self) -> str:
        """The selection if there is one, else the paragraph under the cursor."""
        cursor = self.edit.textCursor()
        if cursor.hasSelection():
            return cursor.selectedText().replace("\u2029", "\n")
        block = cursor.block()
        lines = [block.text()]
        before, after = block.previous(), block.next()
        while before.isValid() and before.text().strip():
            lines.insert(0, before.text())
            before = before.previous()
        while after.isValid() and after.text().strip():
            lines.append(after.text())
            after = after.next()
        return "\n".join(lines)

    def select_all(self) -> None:
        cursor = self.edit.textCursor()
        cursor.select(QTextCursor.SelectionType.Document)
        self.edit.setTextCursor(cursor)

    def _ask_open(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open text", "", OPENABLE)
        if name:
            try:
                self.open_file(Path(name))
            except VesperError as exc:
                ErrorDialog(str(exc), "", True, self).open()
