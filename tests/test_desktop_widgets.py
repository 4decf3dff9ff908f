"""Desktop widgets on their own, offscreen, without a worker: what they show and what they hand on."""

from __future__ import annotations

import av
import numpy as np
import soundfile as sf
from PySide6.QtGui import QTextCursor

from desktop.export import FORMATS, ExportRequest, export_narration
from desktop.model_fit import fits
from desktop.state.narration import NarrationState, generation
from desktop.widgets.chunk_list import ChunkList
from desktop.widgets.editor import TextEditor
from desktop.widgets.export_dialog import ExportDialog
from desktop.widgets.model_picker import ModelPicker
from desktop.widgets.voice_picker import VoicePicker
from inference.hardware import PRESETS
from inference.narration.assembly import Cue
from inference.narration.mastering import Mode
from inference.voice_library import Voice, VoiceLibrary, voice_hash
from tests.conftest import SAMPLE_TRANSCRIPT, SAMPLE_VOICE


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
    voice = Voice("sample", SAMPLE_VOICE, None, voice_hash(SAMPLE_VOICE, None))
    progress = NarrationState(chunk_chars=300)
    progress.revise("One.\n\nTwo.", "text", None, voice, "pocket-tts")
    project = progress.project.open()
    for take in (0, 1):  # a chunk narrated, then regenerated (the project's redo): two takes
        project.write_chunk(progress.planned[0], np.zeros(10, np.float32), 1000)
        if not take:
            progress.planned = project.redo(progress.planned, [1], generation("pocket-tts"))
    progress.refresh()
    chunks = ChunkList()
    qtbot.addWidget(chunks)
    chunks.show_progress(progress)
    rows = [[chunks.table.item(r, c).text() for c in range(4)] for r in range(2)]
    assert rows == [["1", "done", "2/2", "One."], ["2", "pending", "-", "Two."]]
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


def test_export_masters_encodes_and_writes_subtitles(tmp_path):
    rate = 24000
    audio = (0.05 * np.sin(np.arange(2 * rate) / 7)).astype(np.float32)  # quiet: podcast mastering raises it
    cues = [Cue(0.0, 0.9, "First."), Cue(1.05, 2.0, "Second.")]
    target, report = export_narration(ExportRequest(tmp_path / "book", "M4B", Mode.PODCAST, True, "T", "A"),
                                      audio, rate, cues)
    assert target == tmp_path / "book.m4b" and report.gain_db > 0
    with av.open(str(target)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.metadata.get("title") == "T" and abs(container.duration / 1e6 - 2.0) < 0.1
    assert (tmp_path / "book.srt").read_text().startswith("1\n00:00:00,000 --> 00:00:00,900\nFirst.")
    flac, _ = export_narration(ExportRequest(tmp_path / "book.flac", "FLAC", Mode.NONE), audio, rate, cues)
    written, written_rate = sf.read(flac, dtype="float32")
    assert written_rate == rate and np.allclose(written, audio, atol=2**-15)  # 16-bit, unmastered


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
