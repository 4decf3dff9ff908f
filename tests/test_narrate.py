"""Narration through the real worker on the tiny Pocket TTS checkpoint (CPU): projects, resume, edits,
takes, voices, cancel, the ``narrate`` command and its bad input.

One worker serves the module (``client``); tests that need their own process (kill -9) start the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from inference.cli import main
from inference.errors import BadInputError
from inference.narration.book import Narration, narrate
from inference.narration.mastering import Mode
from inference.narration.project import Project
from inference.narration.runner import NarrationCancelled, Runner
from inference.narration.script import Chapter, Paragraph
from inference.voice_library import VoiceLibrary, voice_from_file
from inference.worker.client import WorkerClient
from tests.conftest import REPO, SAMPLE_VOICE
from tests.narration_books import book, chunk

BOOK = book({"The Start": [["It was a bright cold day.", "The clocks were striking."], ["Nobody came."]],
             "The Middle": [["Then it rained.", "It rained for days."]],
             "The End": [["And that was all."]]})
SAME_AUDIO = 1e-4  # batched matrix products round differently from single ones (~3e-6 measured), nothing more


@pytest.fixture(scope="module", autouse=True)
def narration_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # two torch threads on two shared cores thrash
        patch.setenv("VESPER_CACHE_DIR", str(tmp_path_factory.mktemp("vesper-cache")))
        patch.setenv("VESPER_HOME", str(tmp_path_factory.mktemp("vesper-home")))
        yield


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Path:
    return tiny_checkpoint("pocket_tts")


@pytest.fixture(scope="module")
def client(narration_env):
    with WorkerClient() as shared:
        yield shared


@pytest.fixture(scope="module")
def other_voice(tmp_path_factory):
    """A second voice in the library: the sample recording reversed (different content, different hash)."""
    audio, rate = sf.read(SAMPLE_VOICE, dtype="float32")
    path = tmp_path_factory.mktemp("voices") / "other.wav"
    sf.write(path, audio[::-1], rate)
    return VoiceLibrary().add("other", path)


def _narration(tiny: Path, root: Path, script=BOOK, **options) -> Narration:
    return Narration("book.md", script, {None: voice_from_file(SAMPLE_VOICE)}, root / "project", str(tiny),
                     seed=5, master=Mode.NONE, hardware="cpu-16g", **options)


def _chunk_audio(root: Path) -> list[np.ndarray]:
    project = Project(root / "project")
    manifest = project.manifest()
    return [sf.read(project.root / c["file"], dtype="float32")[0] for c in manifest["chunks"]]


def test_book_to_m4b_mp3_flac_with_chapters(client, tiny, tmp_path):
    first = narrate(_narration(tiny, tmp_path, out=tmp_path / "book.m4b", srt=tmp_path / "book.srt"), Runner(client))
    assert (first.run.generated, first.run.reused) == (6, 0)
    with av.open(str(tmp_path / "book.m4b")) as container:
        chapters = container.chapters()
    assert [c["metadata"]["title"] for c in chapters] == ["The Start", "The Middle", "The End"]
    for mark, chapter in zip(first.timeline.chapters, chapters, strict=True):
        assert float(chapter["start"] * chapter["time_base"]) == pytest.approx(mark.start, abs=0.01)
    assert (tmp_path / "book.srt").read_text().count(" --> ") == 6
    for fmt in ("mp3", "flac"):  # the same project: nothing generated again
        again = narrate(_narration(tiny, tmp_path, out=tmp_path / f"book.{fmt}"), Runner(client))
        assert (again.run.generated, again.run.reused) == (0, 6)
        with av.open(str(tmp_path / f"book.{fmt}")) as container:
            assert container.duration / 1e6 == pytest.approx(first.timeline.seconds, abs=0.1)
    assert (tmp_path / "book.cue").read_text().count("TRACK") == 3


def test_chunk_audio_does_not_depend_on_the_batch(client, tiny, tmp_path):
    """The Pocket CPU fast tier draws per-chunk randomness: a chunk alone equals the chunk in a batch of four."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    narrate(_narration(tiny, whole), Runner(client))
    first_chapter = book({"The Start": [["It was a bright cold day."]]})
    narrate(_narration(tiny, parts, script=first_chapter), Runner(client))  # one chunk alone first
    result = narrate(_narration(tiny, parts), Runner(client))
    assert (result.run.generated, result.run.reused) == (5, 1)
    for a, b in zip(_chunk_audio(whole), _chunk_audio(parts), strict=True):
        assert len(a) == len(b) and np.abs(a - b).max() < SAME_AUDIO


def test_edit_one_paragraph_generates_only_its_chunks(client, tiny, tmp_path):
    narrate(_narration(tiny, tmp_path), Runner(client))
    start, *rest = BOOK.chapters
    edited = Chapter(start.title, (Paragraph((chunk("It was a dark warm night."), chunk("The clocks were striking."))),
                                   start.paragraphs[1]))
    result = narrate(_narration(tiny, tmp_path, script=replace(BOOK, chapters=(edited, *rest))), Runner(client))
    assert (result.run.generated, result.run.reused) == (1, 5)


def test_redo_makes_a_new_take_and_keeps_the_old(client, tiny, tmp_path):
    narrate(_narration(tiny, tmp_path), Runner(client))
    before = set((tmp_path / "project" / "chunks").iterdir())
    result = narrate(_narration(tiny, tmp_path, redo=(2, 4)), Runner(client))
    assert (result.run.generated, result.run.reused) == (2, 4)
    manifest = Project(tmp_path / "project").manifest()
    assert [c["take"] for c in manifest["chunks"]] == [0, 1, 0, 1, 0, 0]
    assert sorted(t["chosen"] for t in manifest["takes"].values()) == [1, 1]
    assert before < set((tmp_path / "project" / "chunks").iterdir())  # the first takes are still there
    again = narrate(_narration(tiny, tmp_path), Runner(client))  # the chosen take stays chosen
    assert (again.run.generated, again.run.reused) == (0, 6)


def test_voice_markup_keys_chunks_by_the_other_voice(client, tiny, tmp_path, other_voice):
    script = book({"Dialogue": [["Said the narrator."]]})
    line = Paragraph((chunk("Said the other voice.", voice="other"),))
    script = replace(script, chapters=(Chapter("Dialogue", script.chapters[0].paragraphs + (line,)),))
    narration = replace(_narration(tiny, tmp_path, script=script), voices={
        None: voice_from_file(SAMPLE_VOICE), "other": other_voice})
    narrate(narration, Runner(client))
    chunks = Project(tmp_path / "project").manifest()["chunks"]
    assert [c["voice"] for c in chunks] == ["sample", "other"]
    audio = _chunk_audio(tmp_path)
    assert len(audio) == 2
    same_text_narrator = narrate(replace(narration, script=book({"D": [["Said the other voice."]]}),
                                         project=tmp_path / "narrator"), Runner(client))
    assert same_text_narrator.run.generated == 1  # same text, the narrator's hash: another key
    assert Project(tmp_path / "narrator").manifest()["chunks"][0]["key"] != chunks[1]["key"]


def test_cancel_keeps_finished_chunks(client, tiny, tmp_path):
    def stop_after_first(progress) -> None:
        if progress.generated >= 1:
            runner.cancel()

    runner = Runner(client, stop_after_first)
    with pytest.raises(NarrationCancelled):
        narrate(_narration(tiny, tmp_path), runner)
    done = len(list((tmp_path / "project" / "chunks").glob("*.flac")))
    assert 1 <= done < 6
    result = narrate(_narration(tiny, tmp_path), Runner(client))
    assert (result.run.generated, result.run.reused) == (6 - done, done)


def test_disk_full_mid_narration_leaves_a_resumable_project(client, tiny, tmp_path, monkeypatch):
    """ENOSPC from the OS on the third chunk file: one clear error, two chunks kept, the rerun resumes."""
    import errno

    from inference import output

    real_replace, calls = os.replace, []

    def replace_until_full(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        real_replace(source, target)

    monkeypatch.setattr(output.os, "replace", replace_until_full)
    narration = _narration(tiny, tmp_path, out=tmp_path / "book.flac")
    with pytest.raises(BadInputError, match="No space left on device.*run the same command again: it resumes"):
        narrate(narration, Runner(client))
    monkeypatch.setattr(output.os, "replace", real_replace)
    chunks = tmp_path / "project" / "chunks"
    assert len(list(chunks.glob("*.flac"))) == 1  # the manifest took the first rename, one chunk the second
    assert not list(chunks.glob(".*")) and not (tmp_path / "book.flac").exists()
    result = narrate(narration, Runner(client))
    assert (result.run.generated, result.run.reused) == (5, 1)


def test_progress_reports_done_total_audio_and_eta(client, tiny, tmp_path):
    seen = []
    narrate(_narration(tiny, tmp_path), Runner(client, seen.append))
    assert [p.chunks_done for p in seen] == list(range(7))
    assert all(p.chunks_total == 6 for p in seen)
    assert seen[-1].audio_seconds > 0 and seen[-1].speed > 0 and seen[-1].eta_seconds == pytest.approx(0.0)


@pytest.mark.slow
def test_second_family_narrates(tiny_checkpoint, client, tmp_path):
    script = book({"One": [["Hello there."]], "Two": [["Goodbye now."]]})
    narration = replace(_narration(tiny_checkpoint("csm"), tmp_path, script=script), out=tmp_path / "book.m4b")
    result = narrate(narration, Runner(client))
    assert result.run.generated == 2 and result.run.sample_rate == 24000
    with av.open(str(tmp_path / "book.m4b")) as container:
        assert len(container.chapters()) == 2


# The command line.

MARKDOWN = "# One\n\nFirst sentence here. Second sentence here.\n\nA new paragraph.\n\n# Two\n\nThe end.\n"


def _cli(tmp_path: Path, tiny: Path, *extra: str) -> list[str]:
    return ["narrate", str(tmp_path / "book.md"), "--voice", str(SAMPLE_VOICE), "--model", str(tiny),
            "--project", str(tmp_path / "project"), "--hardware", "cpu-16g", *extra]


def test_cli_narrates_and_sums_up(tiny, tmp_path, capsys):
    (tmp_path / "book.md").write_text(MARKDOWN)
    assert main(_cli(tmp_path, tiny, "--out", str(tmp_path / "book.m4b"), "--vtt", str(tmp_path / "b.vtt"))) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"Wrote {tmp_path / 'book.m4b'}") and "(3 generated, 0 reused)" in last
    assert "podcast -16" in last or "podcast -15" in last
    assert (tmp_path / "b.vtt").read_text().count(" --> ") == 3


def _assert_one_line(capsys, code: int, pattern: str) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("vesper: ") and pattern.lower() in err.lower(), err


@pytest.mark.parametrize(("content", "pattern"), [
    (b"", "nothing to say"), (b"  \n\t\n ", "nothing to say"), (b"\x00\x01\x02binary", "binary"),
    (b"caf\xe9 au lait", "not UTF-8"),
])
def test_cli_bad_text(tiny, tmp_path, capsys, content, pattern):
    (tmp_path / "book.md").write_bytes(content)
    _assert_one_line(capsys, main(_cli(tmp_path, tiny, "--out", str(tmp_path / "book.m4b"))), pattern)
    assert not (tmp_path / "book.m4b").exists() and not (tmp_path / "project").exists()


@pytest.mark.parametrize(("options", "pattern"), [
    (["--voice", "nobody"], "No voice named 'nobody'"),
    (["--out", "/nonexistent-folder/book.m4b"], "does not exist"),
    (["--out", "book.xyz"], "extension .xyz"),
    (["--master", "loud"], "podcast, acx or none"),
    (["--redo", "3-1"], "chunk numbers"),
    (["--redo", "4"], "the book has 3 chunks"),
])
def test_cli_bad_options(tiny, tmp_path, capsys, options, pattern):
    (tmp_path / "book.md").write_text(MARKDOWN)
    _assert_one_line(capsys, main(_cli(tmp_path, tiny, *options)), pattern)


def test_cli_existing_output_needs_force(tiny, tmp_path, capsys):
    (tmp_path / "book.md").write_text(MARKDOWN)
    (tmp_path / "book.m4b").write_bytes(b"mine")
    _assert_one_line(capsys, main(_cli(tmp_path, tiny, "--out", str(tmp_path / "book.m4b"))), "--force")
    assert (tmp_path / "book.m4b").read_bytes() == b"mine"


def test_cli_batch_reports_failures_and_goes_on(tiny, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("The first job.")
    (tmp_path / "b.txt").write_bytes(b"")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"text": "A job from a line.", "output": str(tmp_path / "line.wav")}) + "\n"
                    + json.dumps({"text": "Nobody reads this.", "voice": "nobody"}) + "\n")
    code = main(["narrate", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), str(jobs), "--voice",
                 str(SAMPLE_VOICE), "--model", str(tiny), "--out", str(tmp_path), "--format", "flac",
                 "--project", str(tmp_path / "projects"), "--hardware", "cpu-16g", "--master", "none"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.strip().splitlines()[-1] == "2 of 4 narrations done, 2 failed; 2 chunks generated, 0 reused."
    assert (tmp_path / "a.flac").exists() and (tmp_path / "line.wav").exists()
    assert "b.txt" in err and "nobody" in err


@pytest.mark.slow
def test_cli_kill_9_mid_narration_resumes_to_the_same_audio(tiny, tmp_path):
    """Killed at a random point while chunks are being written; the rerun reuses them and ends identical."""
    text = "\n\n".join(f"# Chapter {c}\n\n" + " ".join(f"Sentence {c} {i} is here." for i in range(4)) * 1
                       for c in range(3))
    (tmp_path / "book.md").write_text(text.replace(". ", ".\n\n"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(project: str, out: str) -> list[str]:
        return [sys.executable, "launch.py", "narrate", str(tmp_path / "book.md"), "--voice", str(SAMPLE_VOICE),
                "--model", str(tiny), "--project", str(tmp_path / project), "--out", str(tmp_path / out),
                "--master", "none", "--seed", "3", "--hardware", "cpu-16g"]

    subprocess.run(command("whole", "whole.flac"), cwd=REPO, env=env, check=True, capture_output=True)
    chunks = tmp_path / "killed" / "chunks"
    process = subprocess.Popen(command("killed", "killed.flac"), cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(chunks.glob("*.flac"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and its worker, mid-narration
    process.wait()
    done = len(list(chunks.glob("*.flac")))
    assert 2 <= done < 12 and not (tmp_path / "killed.flac").exists()
    rerun = subprocess.run(command("killed", "killed.flac"), cwd=REPO, env=env, check=True, capture_output=True,
                           text=True)
    assert f"({12 - done} generated, {done} reused)" in rerun.stdout
    whole, _ = sf.read(tmp_path / "whole.flac", dtype="float32")
    resumed, _ = sf.read(tmp_path / "killed.flac", dtype="float32")
    assert len(whole) == len(resumed) and np.abs(whole - resumed).max() < SAME_AUDIO + 2**-15
