"""The desktop window's plain-Python state, without Qt: narration rows and takes, the player's track, the status bar."""

from __future__ import annotations

import numpy as np
import pytest

from desktop.state.narration import TAKE_SEED_STRIDE, ChunkStatus, NarrationProgress, paragraphs_of
from desktop.state.player import PlayerState, PlayState
from desktop.state.status import GiB, StatusModel
from inference.worker.protocol import (
    CHUNK_GAP_SECONDS,
    JobStarted,
    MemorySample,
    Notice,
    PlanChangeCause,
    PlanChanged,
    RestartCause,
    WorkerRestarted,
)

TEXT = "First paragraph. It has two sentences.\n\nSecond one.\n\n\n  Third,\nover two lines.  "


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_paragraphs_are_split_at_blank_lines_and_chunked():
    assert paragraphs_of(TEXT, "text", 300) == [["First paragraph. It has two sentences."], ["Second one."],
                                                ["Third, over two lines."]]
    assert paragraphs_of("# A heading\n\nIt cost $5.", "markdown", 300) == [["A heading"], ["It cost five dollars."]]
    assert paragraphs_of(" \n ", "text", 300) == []  # nothing to say yet: no rows, no error
    progress = NarrationProgress(TEXT, chunk_chars=25)
    assert [(r.paragraph, r.text) for r in progress.rows] == [
        (0, "First paragraph."), (0, "It has two sentences."), (1, "Second one."), (2, "Third, over two lines.")]
    assert [r.seed for r in progress.rows] == [0, 1, 2, 3]
    assert progress.to_generate() == [0, 1, 2, 3]


def test_jobs_move_rows_through_their_statuses_and_keep_every_take():
    clock = Clock()
    progress = NarrationProgress(TEXT, chunk_chars=300, clock=clock)
    for row, job in enumerate(("a", "b", "c")):
        progress.assign(job, row, progress.take_seed(row))
    assert progress.generating("a") == 0 and progress.rows[0].status is ChunkStatus.GENERATING
    clock.now += 2.0
    progress.ready("a", np.ones(24000, np.float32), 24000)  # 1 s of audio in 2 s: 0.5x real time
    progress.ended("a")
    assert progress.rows[0].status is ChunkStatus.DONE and progress.audio_seconds == 1.0
    assert progress.speed == pytest.approx(0.5) and progress.eta_seconds == pytest.approx(4.0)  # 2 jobs left
    assert "1/3 chunks done" in progress.summary() and "about 4 s left" in progress.summary()
    progress.ended("b", failed=True)
    progress.ended("c")  # cancelled before it started
    assert [r.status for r in progress.rows] == [ChunkStatus.DONE, ChunkStatus.FAILED, ChunkStatus.PENDING]
    assert progress.to_generate() == [1, 2] and progress.assembled() is None

    seed = progress.take_seed(0)
    assert seed == progress.rows[0].seed + TAKE_SEED_STRIDE  # a new take, a new seed
    progress.assign("a2", 0, seed)
    progress.ready("a2", np.full(12000, 0.5, np.float32), 24000)
    progress.ended("a2")
    assert [t.seed for t in progress.rows[0].takes] == [0, seed] and progress.rows[0].chosen == 1
    progress.choose(0, 0)
    assert progress.rows[0].audio.seed == 0
    with pytest.raises(IndexError):
        progress.choose(0, 2)


def test_assembled_joins_chosen_takes_with_the_chunk_pause():
    progress = NarrationProgress("One.\n\nTwo.", chunk_chars=300)
    for row, value in enumerate((0.25, -0.25)):
        progress.assign(f"j{row}", row, row)
        progress.ready(f"j{row}", np.full(100, value, np.float32), 1000)
    audio, rate = progress.assembled()
    gap = int(CHUNK_GAP_SECONDS * 1000)
    assert rate == 1000 and len(audio) == 200 + gap
    assert (audio[:100] == 0.25).all() and not audio[100:100 + gap].any() and (audio[100 + gap:] == -0.25).all()
    assert progress.cues() == [(0.0, 0.1, "One."), (0.1 + gap / 1000, 0.2 + gap / 1000, "Two.")]


def test_an_edited_paragraph_is_cut_again_and_marked_for_regeneration():
    progress = NarrationProgress("Keep me.\n\nChange me.", chunk_chars=300)
    for row in range(2):
        progress.assign(f"j{row}", row, row)
        progress.ready(f"j{row}", np.zeros(10, np.float32), 1000)
        progress.ended(f"j{row}")
    kept = progress.rows[0]
    progress.revise("Keep me.\n\nChanged now.\n\nAnd a new one.")
    assert progress.rows[0] is kept and progress.rows[0].takes
    assert [(r.text, r.stale, bool(r.takes)) for r in progress.rows[1:]] == [
        ("Changed now.", True, False), ("And a new one.", False, False)]
    assert progress.to_generate() == [1, 2]
    assert "(edited)" not in progress.summary()  # the summary counts; the list shows the mark


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
    state.read(10)
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


def test_a_cancelled_job_does_not_reset_a_row_a_newer_job_is_generating():
    progress = NarrationProgress("One.", chunk_chars=300)
    progress.assign("old", 0, 0)
    progress.assign("new", 0, TAKE_SEED_STRIDE)  # regenerate pressed: the old job is being cancelled
    progress.generating("new")
    progress.ended("old")
    assert progress.rows[0].status is ChunkStatus.GENERATING and progress.active_jobs == ["new"]
