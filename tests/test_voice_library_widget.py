"""The voice library widget over a library under a temporary VESPER_HOME: list, rename, delete after asking."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from inference.audio import write_wav
from inference.voice_library import VoiceLibrary


@pytest.fixture
def recordings(tmp_path, reference_voice) -> tuple[Path, Path]:
    audio, rate = reference_voice
    whole, short = tmp_path / "whole.wav", tmp_path / "short.wav"
    write_wav(whole, audio, rate)
    write_wav(short, audio[: rate * 2], rate)
    return whole, short


@pytest.fixture
def library(tmp_path, monkeypatch, recordings):
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    voices = VoiceLibrary()
    voices.add("Bob", recordings[0], "Hello from Bob.")
    voices.add("alice", recordings[1])
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
    assert not (library.root / "Robert").exists()
    assert widget.list.count() == 1 and widget.current.name == "alice"


def test_empty_library_says_how_to_start(qtbot, tmp_path, monkeypatch):
    from desktop.widgets.voice_library import VoiceLibraryWidget

    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "empty"))
    widget = VoiceLibraryWidget(VoiceLibrary())
    qtbot.addWidget(widget)
    assert "record one" in widget.detail.text()
    assert not widget.delete_button.isEnabled() and not widget.play_button.isEnabled()


def test_a_voice_added_elsewhere_appears_on_refresh(qtbot, library, recordings):
    from desktop.widgets.voice_library import VoiceLibraryWidget

    widget = VoiceLibraryWidget(library)
    qtbot.addWidget(widget)
    library.add("Carol", recordings[0])
    widget.refresh("Carol")
    assert widget.current.name == "Carol" and widget.list.count() == 3
    assert all(b.accessibleName() for b in (widget.play_button, widget.rename_button, widget.delete_button))
