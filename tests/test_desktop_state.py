"""The desktop window's plain-Python state, without Qt: narration rows read from a real project, the
player's track, the status bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from desktop.state.narration import ChunkStatus, NarrationState, generation
from desktop.state.player import PlayerState, PlayState
from desktop.state.speech import Say, Silence, read_speech
from desktop.state.status import GiB, StatusModel
from inference import paths
from inference.errors import BadInputError
from inference.narration.assembly import AssemblySettings
from inference.narration.runner import Progress
from inference.voice_library import Voice, VoiceLibrary, voice_hash
from inference.worker.protocol import (
    JobStarted,
    MemorySample,
    Notice,
    PlanChangeCause,
    PlanChanged,
    RestartCause,
    SpeakJob,
    WorkerRestarted,
)
from tests.conftest import SAMPLE_VOICE

TEXT = "First paragraph. It has two sentences.\n\nSecond one.\n\n\n  Third,\nover two lines.  "


VOICE = Voice("sample", SAMPLE_VOICE, None, voice_hash(SAMPLE_VOICE, None))
MODEL = "pocket-tts"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))


def _state(text: str, document: Path | None = None, chunk_chars: int = 300) -> NarrationState:
    state = NarrationState(chunk_chars)
    state.revise(text, "text", document, VOICE, MODEL)
    return state


def _write(state: NarrationState, row: int, value: float, samples: int = 100) -> None:
    """What the runner does when a chunk's audio arrives: the project gets the chunk's file."""
    state.project.open().write_chunk(state.planned[row], np.full(samples, value, np.float32), 1000)


def test_rows_are_the_projects_chunks_by_paragraph():
    state = _state(TEXT, chunk_chars=25)
    assert [(r.number, r.paragraph, r.text, r.status) for r in state.rows] == [
        (1, 0, "First paragraph.", ChunkStatus.PENDING), (2, 0, "It has two sentences.", ChunkStatus.PENDING),
        (3, 1, "Second one.", ChunkStatus.PENDING), (4, 2, "Third, over two lines.", ChunkStatus.PENDING)]
    assert _state(" \n ").rows == [] and _state(" \n ").script is None  # nothing to say yet: no rows, no error
    markdown = NarrationState(300)
    markdown.revise("# A heading\n\nIt cost $5.", "markdown", None, None, MODEL)  # no voice yet: listed, pending
    assert [r.text for r in markdown.rows] == ["A heading", "It cost five dollars."]


def test_a_document_names_its_project_as_the_cli_does(tmp_path):
    assert _state("One.", tmp_path / "My Book.md").project.root == paths.projects_dir() / "My-Book"
    assert _state("One.").project.root == paths.projects_dir() / "untitled"


def test_statuses_and_progress_come_from_the_project():
    state = _state(TEXT)
    _write(state, 0, 0.25)
    state.progress = Progress(1, 3, 1, 0, 0.1, 2.0, 0.05, 4.0)  # what the runner reports while it runs
    state.refresh()
    assert [r.status for r in state.rows] == [ChunkStatus.DONE, ChunkStatus.GENERATING, ChunkStatus.PENDING]
    assert state.summary() == "1/3 chunks done, 0.1 s of audio, 0.05x real time, about 4 s left"
    state.progress = None
    state.refresh()
    assert [r.status for r in state.rows] == [ChunkStatus.DONE, ChunkStatus.PENDING, ChunkStatus.PENDING]
    assert state.summary() == "1/3 chunks done" and state.assembled() is None


def test_a_new_take_is_the_projects_redo_and_an_older_one_can_be_chosen_again():
    state = _state("One.\n\nTwo.")
    _write(state, 0, 0.25)
    state.planned = state.project.redo(state.planned, [1], generation(MODEL))
    _write(state, 0, 0.5)
    state.refresh()
    assert (state.rows[0].take, state.rows[0].takes) == (1, 2)
    assert state.chosen_audio(0)[0][0] == 0.5 and state.take_audio(0, 0)[0][0] == 0.25
    state.choose(0, 0)
    assert state.rows[0].take == 0 and state.chosen_audio(0)[0][0] == 0.25
    assert _state("One.\n\nTwo.").rows[0].take == 0  # kept in the project, not in the window
    with pytest.raises(BadInputError, match="has 2 takes"):
        state.choose(0, 2)


def test_the_narration_is_assembled_as_vesper_narrate_assembles_it():
    state = _state("One.\n\nTwo.")
    assert state.assembly() is None and state.assembled() is None  # not every chunk has a file yet
    for row, value in enumerate((0.25, -0.25)):
        _write(state, row, value)
    state.refresh()
    audio, rate = state.assembled()
    pause = AssemblySettings()  # the narrate command's: edge silence, then the paragraph pause between them
    edge, gap = int(pause.edge_silence * rate), int(pause.paragraph_pause * rate)
    fade = int(pause.fade_seconds * rate)
    assert rate == 1000 and len(audio) == edge + 100 + gap + 100 + edge
    assert not audio[:edge].any() and not audio[edge + 100:edge + 100 + gap].any()
    assert np.allclose(audio[edge + fade:edge + 100 - fade], 0.25, atol=1e-6)
    assert np.allclose(audio[edge + 100 + gap + fade:edge + 200 + gap - fade], -0.25, atol=1e-6)
    assembly = state.assembly()
    list(assembly.blocks())
    assert [(c.start, c.end, c.text) for c in assembly.timeline.cues] == [
        (0.5, 0.6, "One."), (0.5 + 0.1 + gap / 1000, 0.5 + 0.2 + gap / 1000, "Two.")]


def test_a_failed_narration_marks_the_chunk_it_was_generating_until_a_narration_retries_it():
    state = _state("One.\n\nTwo.\n\nThree.")
    state.start()
    _write(state, 0, 0.25)
    state.progress = Progress(1, 3, 1, 0, 0.1, 1.0, None, None)
    state.refresh()
    reason = "Could not write chunk 2: No space left on device; make room and narrate again."
    state.fail(reason)
    assert [r.status for r in state.rows] == [ChunkStatus.DONE, ChunkStatus.FAILED, ChunkStatus.PENDING]
    assert state.rows[1].reason == reason and state.progress is None
    assert state.summary() == "1/3 chunks done, 1 failed"
    state.replan()  # read again when the narration thread ends: still failed
    assert state.rows[1].status is ChunkStatus.FAILED
    assert _state("One.\n\nTwo.\n\nThree.").rows[1].status is ChunkStatus.PENDING  # not kept in the project
    state.start()  # the next narration retries it
    state.progress = Progress(1, 3, 0, 1, 0.1, 0.0, None, None)
    state.refresh()
    assert [r.status for r in state.rows] == [ChunkStatus.DONE, ChunkStatus.GENERATING, ChunkStatus.PENDING]


def test_voice_markup_names_the_librarys_voices(tmp_path):
    library = VoiceLibrary()
    other = tmp_path / "other.wav"
    audio, rate = sf.read(SAMPLE_VOICE, dtype="float32")
    sf.write(other, audio[::-1], rate)  # another recording: another voice hash
    narrator, second = library.add("Narrator", SAMPLE_VOICE), library.add("Other", other)
    state = NarrationState(300, library)
    state.revise("Said by the narrator.\n\n[voice: other] Said by another voice. [voice] And back.", "text", None,
                 narrator, MODEL)
    assert [(r.paragraph, r.text, r.voice) for r in state.rows] == [
        (0, "Said by the narrator.", "Narrator"), (1, "Said by another voice.", "Other"), (1, "And back.", "Narrator")]
    assert [p.voice for p in state.planned] == [narrator, second, narrator]
    state.revise("[voice: Nobody] Hello.", "text", None, narrator, MODEL)
    assert state.rows == [] and state.summary().startswith("Unknown voice 'Nobody' in [voice: Nobody]")


def test_an_edited_paragraph_needs_generating_and_the_others_are_reused():
    state = _state("Keep me.\n\nChange me.")
    for row in range(2):
        _write(state, row, 0.1)
    again = _state("Keep me.\n\nChanged now.\n\nAnd a new one.")
    assert [(r.text, r.status) for r in again.rows] == [
        ("Keep me.", ChunkStatus.DONE), ("Changed now.", ChunkStatus.PENDING), ("And a new one.", ChunkStatus.PENDING)]


def _library_with_another_voice(tmp_path: Path) -> tuple[VoiceLibrary, Voice]:
    library = VoiceLibrary()
    other = tmp_path / "other.wav"
    audio, rate = sf.read(SAMPLE_VOICE, dtype="float32")
    sf.write(other, audio[::-1], rate)  # another recording: another voice hash
    return library, library.add("Other", other, "What the other voice says.")


def test_speak_reads_plain_text_as_one_job_in_the_narrators_voice():
    parts = read_speech("It cost $5.\n\nA second paragraph.", "text", VOICE, VoiceLibrary(), 300)
    assert parts == [Say(VOICE, ("It cost five dollars.", "A second paragraph."))]  # as Narrate lists it
    assert parts[0].job(MODEL) == SpeakJob("It cost five dollars. A second paragraph.", SAMPLE_VOICE, None, MODEL,
                                           chunks=("It cost five dollars.", "A second paragraph."))
    markdown = read_speech("# A heading\n\nSome *emphasis*.", "markdown", VOICE, VoiceLibrary(), 300)
    assert markdown == [Say(VOICE, ("A heading", "Some emphasis."))]


def test_speak_obeys_voice_and_pause_markup_as_narrate_does(tmp_path):
    library, other = _library_with_another_voice(tmp_path)
    text = ("[pause 1s] One by the narrator. [voice: other] Two by the other. [pause 1.5s] Three, still her. "
            "[voice] Four, back.\n\nFive, the narrator's paragraph. [pause 2s]")
    assert read_speech(text, "text", VOICE, library, 300) == [
        Say(VOICE, ("One by the narrator.",)), Say(other, ("Two by the other.",)), Silence(1.5),
        Say(other, ("Three, still her.",)), Say(VOICE, ("Four, back.", "Five, the narrator's paragraph."))]
    job = Say(other, ("Two by the other.",)).job(MODEL)
    assert (job.voice, job.voice_text) == (other.recording, "What the other voice says.")  # her recording


@pytest.mark.parametrize("text", ["[voice: Nobody] Hello.", "Hello [there.", "Hello [pause forever].",
                                  "[pause 1s]", " \n "])
def test_speak_stops_on_what_narrate_stops_on_with_its_message(tmp_path, text):
    library, _ = _library_with_another_voice(tmp_path)
    narration = NarrationState(300, library)
    narration.revise(text, "text", None, VOICE, MODEL)
    with pytest.raises(BadInputError) as raised:
        read_speech(text, "text", VOICE, library, 300)
    assert str(raised.value) == narration.problem and "\n" not in narration.problem


def test_player_state_puts_the_silence_asked_for_before_the_next_chunk():
    state = PlayerState(gap=0.01)
    state.clear(live=True)
    state.feed((1, 0), 0, np.ones(5, np.float32), 1000)
    state.silence(0.02)
    state.silence(0.005)  # two pauses in a row add up
    state.feed((1, 0), 5, np.ones(5, np.float32), 1000)  # more of the same chunk: no pause inside it
    state.feed((2, 0), 0, np.full(5, 0.5, np.float32), 1000)
    state.play()
    expected = np.concatenate([np.ones(10, np.float32), np.zeros(35, np.float32), np.full(5, 0.5, np.float32)])
    np.testing.assert_array_equal(state.read(50), expected)
    state.clear(live=True)
    state.silence(1.0)
    state.clear(live=True)  # a new speech owes nothing
    state.feed("first", 0, np.ones(3, np.float32), 1000)
    assert state.duration == pytest.approx(0.003)


def test_player_state_spaces_a_chunk_by_the_pause_it_is_fed_with():
    state = PlayerState(gap=0.01)
    state.clear(live=True)
    state.feed("one", 0, np.ones(5, np.float32), 1000, pause=0.5)  # the first chunk plays at once
    state.silence(0.002)  # a [pause] before the next comes on top
    state.feed("two", 0, np.ones(5, np.float32), 1000, pause=0.03)
    state.feed("three", 0, np.ones(5, np.float32), 1000)  # no pause given: the chunk pause
    state.play()
    expected = np.concatenate([np.ones(5), np.zeros(32), np.ones(5), np.zeros(10), np.ones(5)]).astype(np.float32)
    np.testing.assert_array_equal(state.read(57), expected)


def test_narration_state_gives_each_chunk_the_silence_the_assembly_puts_before_it(tmp_path):
    narration = NarrationState(300)
    narration.revise("One thing.\n\nAnother. [pause 2s] And a third.", "text", None, VOICE, MODEL)
    settings = AssemblySettings()
    assert [narration.pause_before(n) for n in (1, 2, 3, 4)] == pytest.approx(
        [settings.edge_silence, settings.paragraph_pause, settings.sentence_pause + 2.0, None])


def test_player_state_skips_what_a_retried_chunk_streams_again():
    state = PlayerState(gap=0.01)
    state.clear(live=True)
    first = np.linspace(-0.5, 0.5, 30, dtype=np.float32)
    state.feed(0, 0, first[:10], 1000)
    state.feed(0, 10, first[10:20], 1000)
    state.feed(0, 0, first[:20], 1000)  # a retry from offset 0
    state.feed(0, 0, first, 1000)  # ChunkReady: the whole chunk
    state.feed(1, 0, np.full(5, 2.0, np.float32), 1000)  # clipped like the saved file
    state.play()
    heard = state.read(100)
    expected = np.concatenate([first, np.zeros(10, np.float32), np.ones(5, np.float32)])
    np.testing.assert_array_equal(heard[:45], expected)
    assert not heard[45:].any()
    assert state.state is PlayState.PLAYING and state.position == 45  # live: waits for more
    state.close()
    assert state.state is PlayState.STOPPED and state.position == 0  # complete, and at the end: stops now
    state.clear(live=True)
    state.feed(0, 0, first, 1000)
    state.play()
    state.read(10)
    state.close()
    assert state.state is PlayState.PLAYING  # 20 samples still to hear
    state.read(30)
    assert state.state is PlayState.STOPPED and state.position == 0  # complete: stops at the end


def test_player_state_pause_seek_and_stop():
    state = PlayerState()
    audio = np.arange(1000, dtype=np.float32) / 1000
    state.load(audio, 100)
    assert state.duration == 10.0 and state.read(10).sum() == 0  # stopped: silence, cursor still
    state.play()
    np.testing.assert_array_equal(state.read(10), audio[:10])
    state.pause()
    assert not state.read(10).any() and state.seconds == pytest.approx(0.1)
    state.seek(5.0)
    state.play()  # resumes where it was sought, not from the start
    np.testing.assert_array_equal(state.read(3), audio[500:503])
    state.seek(99)
    assert state.position == 1000
    state.stop()
    assert state.state is PlayState.STOPPED and state.position == 0
    with pytest.raises(ValueError, match="Hz"):
        state.feed("other", 0, audio, 200)


def test_status_model_reads_memory_plan_and_notices():
    model = StatusModel(gpu_name="NVIDIA GeForce RTX 4060 Laptop GPU")
    assert model.memory_text == "Memory: -" and model.plan_text == "Plan: not loaded"
    model.apply(JobStarted("j", ("a",), 0, "resident on cuda:0, batch 4", (), 24000))
    assert model.plan_text == "Plan: resident on cuda:0, batch 4"
    model.apply(MemorySample("j", rss_bytes=GiB, nvml_used_bytes=3 * GiB, nvml_total_bytes=8 * GiB,
                             limit_bytes=6 * GiB))
    assert model.memory_text == "VRAM 3.0 / 6.0 GiB"  # the limit Vesper plans for, not the card's size
    model.apply(MemorySample("j", rss_bytes=GiB // 2))
    assert model.memory_text == "RAM 0.5 GiB"  # a CPU plan
    notice = model.apply(PlanChanged("j", "resident", "codec on cpu", PlanChangeCause.OUT_OF_MEMORY, 3,
                                     "Out of memory at chunk 4: continuing with the codec on the CPU."))
    assert notice.startswith("Out of memory") and model.plan == "codec on cpu"
    assert model.apply(WorkerRestarted("j", RestartCause.CRASHED, -9, 2, "")) == \
        "The inference worker crashed and was restarted."
    assert model.apply(Notice("j", "Hello.")) == "Hello." and len(model.notices) == 3
