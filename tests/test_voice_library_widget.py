"""The voice library widget over a library under a temporary VESPER_HOME: list, rename, delete after asking."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.folder_voices import FolderVoices


@pytest.fixture
def library(tmp_path, monkeypatch, reference_voice):
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    voices = FolderVoices()
    audio, rate = reference_voice
    voices.add("Bob", audio, rate, "Hello from Bob.")
    voices.add("alice", audio[: rate * 2], rate)
    return voices


def _answer(button: QMessageBox.StandardButton) -> None:
    """Press ``button`` in the confirmation box as soon as it is shown."""
    def press() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            box.button(button).click()
        else:
            QTimer.singleShot(10, press)

    QTimer.singleShot(0, press)


def test_lists_renames_and_deletes_after_confirmation(qtbot, library):
    from desktop.widgets.voice_library import VoiceLibraryWidget

    widget = VoiceLibraryWidget(library)
    qtbot.addWidget(widget)
    assert [widget.list.item(i).text() for i in range(widget.list.count())] == ["alice", "Bob"]
    assert "2.0 s" in widget.detail.text() and "no transcript" in widget.detail.text()
    widget.list.setCurrentRow(1)
    assert "Hello from Bob." in widget.detail.text()

    widget.rename("Robert")
    assert widget.current.name == "Robert"
    assert sorted(v.name for v in library.list()) == ["Robert", "alice"]

    _answer(QMessageBox.StandardButton.No)
    widget.ask_delete()
    assert len(library.list()) == 2  # "No" keeps it

    _answer(QMessageBox.StandardButton.Yes)
    widget.ask_delete()
    assert [v.name for v in library.list()] == ["alice"]
    assert not (library.root / "Robert.wav").exists()
    assert widget.list.count() == 1 and widget.current.name == "alice"


def test_empty_library_says_how_to_start(qtbot, tmp_path, monkeypatch):
    from desktop.widgets.voice_library import VoiceLibraryWidget

    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "empty"))
    widget = VoiceLibraryWidget(FolderVoices())
    qtbot.addWidget(widget)
    assert "record one" in widget.detail.text()
    assert not widget.delete_button.isEnabled() and not widget.play_button.isEnabled()


def test_a_voice_saved_by_the_recorder_appears(qtbot, library, reference_voice):
    from desktop.widgets.voice_library import VoiceLibraryWidget

    widget = VoiceLibraryWidget(library)
    qtbot.addWidget(widget)
    audio, rate = reference_voice
    library.add("Carol", np.asarray(audio), rate)
    widget.refresh("Carol")
    assert widget.current.name == "Carol" and widget.list.count() == 3
    assert all(b.accessibleName() for b in (widget.play_button, widget.rename_button, widget.delete_button))
