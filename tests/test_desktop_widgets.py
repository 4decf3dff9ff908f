"""Desktop widgets on their own, offscreen, without a worker: what they show and what they hand on."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PySide6.QtGui import QTextCursor

from desktop.export import FORMATS, ExportRequest, export_narration, ready
from desktop.model_fit import fits
from desktop.state.narration import NarrationState, generation
from desktop.widgets.chunk_list import ChunkList
from desktop.widgets.editor import TextEditor
from desktop.widgets.export_dialog import ExportDialog
from desktop.widgets.model_picker import ModelPicker
from desktop.widgets.voice_picker import VoicePicker
from inference.errors import BadInputError
from inference.hardware import PRESETS
from inference.narration.mastering import Mode
from inference.narration.runner import Progress
from inference.voice_library import Voice, VoiceLibrary, voice_hash
from tests.conftest import SAMPLE_TRANSCRIPT, SAMPLE_VOICE

VOICE = Voice("sample", SAMPLE_VOICE, None, voice_hash(SAMPLE_VOICE, None))


def test_speak_takes_the_selection_or_else_the_paragraph_under_the_cursor(qtbot):
    editor = TextEditor()
    qtbot.addWidget(editor)
    editor.set_text("First line\nof one paragraph.\n\nSecond paragraph.")
    cursor = editor.edit.textCursor()
    cursor.setPosition(3)
    editor.edit.setTextCursor(cursor)
    assert editor.speakable() == "First line\nof one paragraph."
    cursor.movePosition(QTextCursor.MoveOperation.End)
    editor.edit.setTextCursor(cursor)
    assert editor.speakable() == "Second paragraph."
    cursor.setPosition(6)
    cursor.setPosition(22, QTextCursor.MoveMode.KeepAnchor)
    editor.edit.setTextCursor(cursor)
    assert editor.speakable() == "line\nof one para"


def test_chunk_list_shows_status_takes_and_hands_on_choices(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("VESPER_HOME", str(tmp_path))
    progress = NarrationState(chunk_chars=300)
    progress.revise("One.\n\nTwo.\n\nThree.", "text", None, VOICE, "pocket-tts")
    project = progress.project.open()
    for take in (0, 1):  # a chunk narrated, then regenerated (the project's redo): two takes
        project.write_chunk(progress.planned[0], np.zeros(10, np.float32), 1000)
        if not take:
            progress.planned = project.redo(progress.planned, [1], generation("pocket-tts"))
    progress.start()
    progress.progress = Progress(1, 3, 1, 0, 0.1, 1.0, None, None)
    progress.fail("The inference worker stopped: run it again.")  # the narration failed at chunk 2
    chunks = ChunkList()
    qtbot.addWidget(chunks)
    chunks.show_progress(progress)
    rows = [[chunks.table.item(r, c).text() for c in range(4)] for r in range(3)]
    assert rows == [["1", "done", "2/2", "One."], ["2", "failed", "-", "Two."], ["3", "pending", "-", "Three."]]
    assert chunks.table.item(1, 1).toolTip() == "The inference worker stopped: run it again."
    assert not chunks.table.item(1, 1).icon().isNull() and chunks.table.item(2, 1).icon().isNull()
    assert chunks.table.item(0, 3).toolTip() == "One.\n\nVoice: sample"
    assert chunks.progress_label.text() == "1/3 chunks done, 1 failed"
    chunks.table.setCurrentCell(0, 0)
    assert [chunks.takes.itemText(i) for i in range(chunks.takes.count())] == ["1", "2"]
    with qtbot.waitSignal(chunks.take_chosen) as chosen:
        chunks.takes.activated.emit(0)
    assert chosen.args == [0, 0]
    with qtbot.waitSignal(chunks.regenerate_requested) as regenerate:
        chunks.regenerate_button.click()
    assert regenerate.args == [0]


def test_export_dialog_builds_the_request(qtbot, tmp_path):
    dialog = ExportDialog(tmp_path, "MP3", "My book")
    qtbot.addWidget(dialog)
    assert [dialog.format.itemText(i) for i in range(dialog.format.count())] == list(FORMATS)
    assert dialog.path.text() == str(tmp_path / "narration.mp3")
    dialog.format.setCurrentText("FLAC")
    dialog.preset.setCurrentIndex(dialog.preset.findData(Mode.ACX))
    dialog.subtitles.setChecked(True)
    request = dialog.request()
    assert request == ExportRequest(tmp_path / "narration.flac", "FLAC", Mode.ACX, True, "My book", "")
    assert request.master is Mode.ACX  # the enum itself: mastering compares by identity


def test_export_renders_the_project_as_narrate_does_with_chapters_and_subtitles(tmp_path, monkeypatch):
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    rate = 24000
    state = NarrationState(chunk_chars=300)
    state.revise("# Morning\n\nThe first paragraph.\n\n# Evening\n\nThe last one.", "markdown", None, VOICE,
                 "pocket-tts")
    project = state.project.open()
    tone = (0.05 * np.sin(np.arange(rate // 2) / 7)).astype(np.float32)  # quiet: podcast mastering raises it
    for item in state.planned:
        project.write_chunk(item, tone, rate)
    state.refresh()
    target, report = export_narration(ExportRequest(tmp_path / "book", "M4B", Mode.PODCAST, True, "T", "A"),
                                      state.assembly(), state.script)
    assert target == tmp_path / "book.m4b" and report.gain_db > 0
    audio, _ = state.assembled()
    with av.open(str(target)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.metadata.get("title") == "T"
        assert container.duration / 1e6 == pytest.approx(len(audio) / rate, abs=0.1)
        chapters = container.chapters()
    assert [c["metadata"]["title"] for c in chapters] == ["Morning", "Evening"]
    assert float(chapters[1]["start"] * chapters[1]["time_base"]) == pytest.approx(
        0.5 + 0.5 + 0.8 + 0.5 + 2.0, abs=0.01)  # edge, two chunks a paragraph apart, the chapter pause
    cues = (tmp_path / "book.srt").read_text().split("\n\n")
    assert [c.splitlines()[2] for c in cues if c] == ["Morning", "The first paragraph.", "Evening", "The last one."]
    flac, _ = export_narration(ExportRequest(tmp_path / "book.flac", "FLAC", Mode.NONE), state.assembly(), state.script)
    written, written_rate = sf.read(flac, dtype="float32")
    assert written_rate == rate and np.allclose(written, audio, atol=2**-15)  # 16-bit, unmastered
    assert (tmp_path / "book.cue").read_text().count("TRACK") == 2  # FLAC's chapters: a cue sheet beside it
    with pytest.raises(BadInputError, match="Narrate every chunk"):
        ready(_state_with_nothing_done(tmp_path))


def _state_with_nothing_done(tmp_path: Path):
    state = NarrationState(chunk_chars=300)
    state.revise("Not narrated yet.", "text", tmp_path / "other.txt", VOICE, "pocket-tts")
    return state.assembly()


def test_model_picker_takes_a_typed_id_or_a_folder(qtbot, tmp_path):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    assert picker.model() == "pocket-tts"
    picker.combo.setEditText("owner/some-model")
    assert picker.model() == "owner/some-model"
    picker.choose(str(tmp_path))
    assert picker.model() == str(tmp_path)


def test_model_picker_lists_the_catalogue_with_where_each_model_would_run(qtbot):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    laptop = {fit.name: fit for fit in fits(PRESETS["laptop-4060-8g"])}
    assert laptop["pocket-tts"].verdict.startswith("fits on the GPU")
    small = {fit.name: fit for fit in fits(PRESETS["cpu-16g"])}
    assert small["pocket-tts"].verdict.startswith("runs on the CPU")
    assert small["vibevoice-7b"].verdict == "does not fit" and "does not fit" in small["vibevoice-7b"].detail
    picker.show_fits(list(laptop.values()))
    names = [picker.combo.itemData(i) for i in range(picker.combo.count())]
    assert names == list(laptop)  # the default model once, then the rest of the catalogue
    picker.choose("csm-1b")
    assert picker.verdict.text() == laptop["csm-1b"].verdict


def test_voice_picker_lists_the_library_and_takes_a_recording_file(qtbot, tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    alice = library.add("Alice", SAMPLE_VOICE, "Alice's words.")
    picker = VoicePicker(library)
    qtbot.addWidget(picker)
    assert picker.voice() == alice
    picker.choose(SAMPLE_VOICE)  # a file outside the library; its transcript from sample.txt beside it
    assert picker.voice().recording == SAMPLE_VOICE and picker.voice().transcript == SAMPLE_TRANSCRIPT
    library.rename("Alice", "Alicia")
    picker.combo.setCurrentIndex(0)
    picker.refresh()
    assert [picker.combo.itemText(i) for i in range(picker.combo.count())] == ["Alicia"]


def test_editor_opens_text_markdown_and_epub(qtbot, tmp_path):
    from ebooklib import epub

    editor = TextEditor()
    qtbot.addWidget(editor)
    (tmp_path / "notes.md").write_text("# Heading\n\nSome *text*.\n")
    editor.open_file(tmp_path / "notes.md")
    assert editor.kind == "markdown" and editor.text() == "# Heading\n\nSome *text*."
    book = epub.EpubBook()
    book.set_identifier("id")
    book.set_title("A Book")
    chapter = epub.EpubHtml(title="The Start", file_name="start.xhtml")
    chapter.content = "<html><body><h1>The Start</h1><p>First paragraph.</p><p>Second one.</p></body></html>"
    book.add_item(chapter)
    book.toc = [chapter]
    book.spine = [chapter]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(tmp_path / "book.epub"), book)
    editor.open_file(tmp_path / "book.epub")
    assert editor.kind == "text" and "First paragraph.\n\nSecond one." in editor.text()
    assert editor.path_label.text() == "book.epub"
