"""Narration through the real worker on the tiny Pocket TTS checkpoint (CPU): projects, resume, edits,
takes, voices, cancel, the ``narrate`` command and its bad input.

One worker serves the module (the ``runner`` fixture makes runners on it);
tests that need their own process (kill -9) start the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from inference.cli import main
from inference.errors import BadInputError
from inference.narration.book import Narration, TextSettings, chunk_limit, narrate, read_script, text_settings
from inference.narration.mastering import Mode
from inference.narration.project import Generation, Project, chunk_key, model_revision
from inference.narration.runner import NarrationCancelled, Relay, Runner
from inference.narration.script import Chapter, Paragraph
from inference.voice_library import VoiceLibrary, voice_from_file
from inference.worker.client import WorkerClient
from inference.worker.protocol import JobFinished, SpeakJob
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
def runner(narration_env):
    """Runners on one shared worker, which pushes its events to the runner being served (as the CLI does)."""
    relay = Relay()
    with WorkerClient(on_event=relay) as client:
        yield lambda on_progress=None: relay.serve(Runner(client, on_progress))


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


def test_book_to_m4b_mp3_flac_with_chapters(runner, tiny, tmp_path):
    first = narrate(_narration(tiny, tmp_path, out=tmp_path / "book.m4b", srt=tmp_path / "book.srt"), runner())
    assert (first.run.generated, first.run.reused) == (6, 0)
    with av.open(str(tmp_path / "book.m4b")) as container:
        chapters = container.chapters()
    assert [c["metadata"]["title"] for c in chapters] == ["The Start", "The Middle", "The End"]
    for mark, chapter in zip(first.timeline.chapters, chapters, strict=True):
        assert float(chapter["start"] * chapter["time_base"]) == pytest.approx(mark.start, abs=0.01)
    assert (tmp_path / "book.srt").read_text().count(" --> ") == 6
    for fmt in ("mp3", "flac"):  # the same project: nothing generated again
        again = narrate(_narration(tiny, tmp_path, out=tmp_path / f"book.{fmt}"), runner())
        assert (again.run.generated, again.run.reused) == (0, 6)
        with av.open(str(tmp_path / f"book.{fmt}")) as container:
            assert container.duration / 1e6 == pytest.approx(first.timeline.seconds, abs=0.1)
    assert (tmp_path / "book.cue").read_text().count("TRACK") == 3


def test_chunk_audio_does_not_depend_on_the_batch(runner, tiny, tmp_path):
    """The Pocket CPU fast tier draws per-chunk randomness: a chunk alone equals the chunk in a batch of four."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    narrate(_narration(tiny, whole), runner())
    first_chapter = book({"The Start": [["It was a bright cold day."]]})
    narrate(_narration(tiny, parts, script=first_chapter), runner())  # one chunk alone first
    result = narrate(_narration(tiny, parts), runner())
    assert (result.run.generated, result.run.reused) == (5, 1)
    for a, b in zip(_chunk_audio(whole), _chunk_audio(parts), strict=True):
        assert len(a) == len(b) and np.abs(a - b).max() < SAME_AUDIO


def test_edit_one_paragraph_generates_only_its_chunks(runner, tiny, tmp_path):
    narrate(_narration(tiny, tmp_path), runner())
    start, *rest = BOOK.chapters
    edited = Chapter(start.title, (Paragraph((chunk("It was a dark warm night."), chunk("The clocks were striking."))),
                                   start.paragraphs[1]))
    result = narrate(_narration(tiny, tmp_path, script=replace(BOOK, chapters=(edited, *rest))), runner())
    assert (result.run.generated, result.run.reused) == (1, 5)


def test_redo_makes_a_new_take_and_keeps_the_old(runner, tiny, tmp_path):
    narrate(_narration(tiny, tmp_path), runner())
    before = set((tmp_path / "project" / "chunks").iterdir())
    result = narrate(_narration(tiny, tmp_path, redo=(2, 4)), runner())
    assert (result.run.generated, result.run.reused) == (2, 4)
    manifest = Project(tmp_path / "project").manifest()
    assert [c["take"] for c in manifest["chunks"]] == [0, 1, 0, 1, 0, 0]
    assert sorted(t["chosen"] for t in manifest["takes"].values()) == [1, 1]
    assert before < set((tmp_path / "project" / "chunks").iterdir())  # the first takes are still there
    again = narrate(_narration(tiny, tmp_path), runner())  # the chosen take stays chosen
    assert (again.run.generated, again.run.reused) == (0, 6)


def test_voice_markup_keys_chunks_by_the_other_voice(runner, tiny, tmp_path, other_voice):
    script = book({"Dialogue": [["Said the narrator."]]})
    line = Paragraph((chunk("Said the other voice.", voice="other"),))
    script = replace(script, chapters=(Chapter("Dialogue", script.chapters[0].paragraphs + (line,)),))
    narration = replace(_narration(tiny, tmp_path, script=script), voices={
        None: voice_from_file(SAMPLE_VOICE), "other": other_voice})
    narrate(narration, runner())
    chunks = Project(tmp_path / "project").manifest()["chunks"]
    assert [c["voice"] for c in chunks] == ["sample", "other"]
    audio = _chunk_audio(tmp_path)
    assert len(audio) == 2
    same_text_narrator = narrate(replace(narration, script=book({"D": [["Said the other voice."]]}),
                                         project=tmp_path / "narrator"), runner())
    assert same_text_narrator.run.generated == 1  # same text, the narrator's hash: another key
    assert Project(tmp_path / "narrator").manifest()["chunks"][0]["key"] != chunks[1]["key"]


def test_cancel_keeps_finished_chunks(runner, tiny, tmp_path):
    def stop_after_first(progress) -> None:
        if progress.generated >= 1:
            stopping.cancel()

    stopping = runner(stop_after_first)
    with pytest.raises(NarrationCancelled):
        narrate(_narration(tiny, tmp_path), stopping)
    done = len(list((tmp_path / "project" / "chunks").glob("*.flac")))
    assert 1 <= done < 6
    result = narrate(_narration(tiny, tmp_path), runner())
    assert (result.run.generated, result.run.reused) == (6 - done, done)


def test_disk_full_mid_narration_leaves_a_resumable_project(runner, tiny, tmp_path, monkeypatch):
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
        narrate(narration, runner())
    monkeypatch.setattr(output.os, "replace", real_replace)
    chunks = tmp_path / "project" / "chunks"
    assert len(list(chunks.glob("*.flac"))) == 1  # the manifest took the first rename, one chunk the second
    assert not list(chunks.glob(".*")) and not (tmp_path / "book.flac").exists()
    result = narrate(narration, runner())
    assert (result.run.generated, result.run.reused) == (5, 1)


def test_progress_reports_done_total_audio_and_eta(runner, tiny, tmp_path):
    seen = []
    narrate(_narration(tiny, tmp_path), runner(seen.append))
    assert [p.chunks_done for p in seen] == list(range(7))
    assert all(p.chunks_total == 6 for p in seen)
    assert seen[-1].audio_seconds > 0 and seen[-1].speed > 0 and seen[-1].eta_seconds == pytest.approx(0.0)


@pytest.mark.slow
def test_second_family_narrates(tiny_checkpoint, runner, tmp_path):
    script = book({"One": [["Hello there."]], "Two": [["Goodbye now."]]})
    narration = replace(_narration(tiny_checkpoint("csm"), tmp_path, script=script), out=tmp_path / "book.m4b")
    result = narrate(narration, runner())
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
    assert last.startswith(f"Wrote {tmp_path / 'book.m4b'}") and "(5 generated, 0 reused)" in last
    assert "podcast -16" in last or "podcast -15" in last
    assert (tmp_path / "b.vtt").read_text().count(" --> ") == 5  # the two headings are read


def _assert_one_line(capsys, code: int, pattern: str) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("vesper: ") and pattern.lower() in err.lower(), err


@pytest.mark.parametrize(("content", "pattern"), [
    (b"", "no words to read"), (b"  \n\t\n ", "no words to read"), (b"\x00\x01\x02binary", "binary"),
    (b"caf\xe9 au lait", "not valid UTF-8"),
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
    (["--redo", "6"], "the book has 5 chunks"),
    (["--dictionary", "/nonexistent/names.txt"], "Cannot read the dictionary names.txt"),
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
    assert 2 <= done < 15 and not (tmp_path / "killed.flac").exists()
    rerun = subprocess.run(command("killed", "killed.flac"), cwd=REPO, env=env, check=True, capture_output=True,
                           text=True)
    assert f"({15 - done} generated, {done} reused)" in rerun.stdout  # 12 sentences, 3 headings
    whole, _ = sf.read(tmp_path / "whole.flac", dtype="float32")
    resumed, _ = sf.read(tmp_path / "killed.flac", dtype="float32")
    assert len(whole) == len(resumed) and np.abs(whole - resumed).max() < SAME_AUDIO + 2**-15


# The source read by build_script: EPUB, dictionary, normalisation, voice markup (the CLI's own functions).

def _epub_book(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("vesper-narrate")
    book.set_title("An EPUB Book")
    book.add_author("Eve Author")
    pages = [epub.EpubHtml(title=title, file_name=f"{name}.xhtml", lang="en") for name, title in
             (("one", "Arrival"), ("two", "Departure"))]
    pages[0].content = "<html><body><h1>Arrival</h1><p>The train came in.</p><p>Nobody got off.</p></body></html>"
    pages[1].content = "<html><body><p>Then it left again.</p></body></html>"  # no heading: its TOC title is read
    for page in pages:
        book.add_item(page)
    book.toc = [epub.Link(p.file_name, p.title, p.file_name.split(".")[0]) for p in pages]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = pages
    epub.write_epub(str(path), book)
    return path


def _from_source(tiny: Path, root: Path, source, text: TextSettings | None = None, voices=(), **options) -> Narration:
    text = text or text_settings(root / "project")
    script = read_script(source, text, voices, chunk_limit(str(tiny), "cpu-16g"))
    return replace(_narration(tiny, root, script=script, text=text, **options), source=str(source))


def test_epub_narrates_to_m4b_with_a_mark_per_chapter_where_its_title_is_read(runner, tiny, tmp_path):
    narration = _from_source(tiny, tmp_path, _epub_book(tmp_path / "book.epub"), out=tmp_path / "book.m4b")
    result = narrate(narration, runner())
    assert [[c.text for c in ch.chunks] for ch in narration.script.chapters] == [
        ["Arrival", "The train came in.", "Nobody got off."], ["Departure", "Then it left again."]]
    with av.open(str(tmp_path / "book.m4b")) as container:
        chapters = container.chapters()
        assert (container.metadata["title"], container.metadata["artist"]) == ("An EPUB Book", "Eve Author")
    assert [c["metadata"]["title"] for c in chapters] == ["Arrival", "Departure"]
    starts = [float(c["start"] * c["time_base"]) for c in chapters]
    assert starts == pytest.approx([m.start for m in result.timeline.chapters], abs=0.01)
    title_cues = [c for c in result.timeline.cues if c.text in ("Arrival", "Departure")]
    assert starts[1] == pytest.approx(title_cues[1].start, abs=0.01)  # each mark starts where its title is said
    assert starts[0] == 0.0 and title_cues[0].start < 1.0  # after the opening silence


def test_dictionary_change_regenerates_only_chunks_with_that_word(runner, tiny, tmp_path):
    """The dictionary is copied into the project; editing an entry there regenerates the one chunk with the word."""
    source = tmp_path / "book.md"
    source.write_text("Siobhan came home.\n\nThe rain stopped.\n\nIt was 3 o'clock.\n\nThe door opened.\n")
    mine = tmp_path / "names.txt"
    mine.write_text("Siobhan = shi-VAWN\n")
    first = narrate(_from_source(tiny, tmp_path, source, text_settings(tmp_path / "project", mine)), runner())
    assert (first.run.generated, first.run.reused) == (4, 0)
    project = Project(tmp_path / "project")
    assert project.manifest()["text"] == {"dictionary": "dictionary.txt", "normalize": True, "read_code": False}
    project.dictionary_path.write_text("Siobhan = shiv-AWN\n")  # the project's own copy, edited
    again = narrate(_from_source(tiny, tmp_path, source), runner())
    assert (again.run.generated, again.run.reused) == (1, 3)
    assert project.manifest()["chunks"][0]["text"] == "shiv-AWN came home."
    raw = narrate(_from_source(tiny, tmp_path, source, text_settings(tmp_path / "project", normalize=False)),
                  runner())
    assert (raw.run.generated, raw.run.reused) == (1, 3)  # "3" is no longer said as "three"
    assert project.manifest()["text"]["normalize"] is False and not text_settings(tmp_path / "project").normalize


@pytest.fixture(scope="module")
def narrator_voice(other_voice):
    """Two voices in the library (VESPER_HOME is the module's): "narrator" and "other"."""
    return VoiceLibrary().add("narrator", SAMPLE_VOICE)


def test_cli_voice_markup_switches_to_a_library_voice(tiny, tmp_path, capsys, narrator_voice, other_voice):
    (tmp_path / "book.md").write_text("She asked.\n\n[voice: other] I answered. [voice] She nodded.\n")
    code = main(_cli(tmp_path, tiny, "--voice", "narrator", "--master", "none", "--out", str(tmp_path / "d.wav")))
    assert code == 0 and "(3 generated, 0 reused)" in capsys.readouterr().out
    manifest = Project(tmp_path / "project").manifest()
    assert [(c["voice"], c["text"]) for c in manifest["chunks"]] == [
        ("narrator", "She asked."), ("other", "I answered."), ("narrator", "She nodded.")]
    generation = Generation(str(tiny), model_revision(str(tiny)), 0)
    assert manifest["chunks"][1]["key"] == chunk_key("I answered.", other_voice.content_hash, generation)
    assert manifest["chunks"][0]["key"] == chunk_key("She asked.", narrator_voice.content_hash, generation)
    assert manifest["voices"]["other"]["content_hash"] == other_voice.content_hash


@pytest.mark.parametrize(("text", "pattern"), [
    ("Hello [voice: nobody] there.", "Unknown voice 'nobody' in [voice: nobody] at line 1, column 7"),
    ("Fine.\n\nSee [pause x] now.", "Malformed pause [pause x] at line 3, column 5"),
    ("Fine.\n\nAn [unclosed tag.", "Unclosed [ at line 3, column 4"),
])
def test_cli_bad_markup_is_one_line_with_its_place(tiny, tmp_path, capsys, text, pattern):
    (tmp_path / "book.md").write_text(text)
    _assert_one_line(capsys, main(_cli(tmp_path, tiny, "--out", str(tmp_path / "book.m4b"))), pattern)
    assert not (tmp_path / "book.m4b").exists() and not (tmp_path / "project").exists()


# The push API the GUI's WorkerBridge drives: one client built with on_event, shared with other jobs.

def test_runner_shares_a_client_built_with_on_event(tiny, tmp_path):
    """As the bridge does: every event is seen by the owner (re-emitted as signals in the GUI) and handed to
    the runner, which runs on another thread; a second job on the same client runs alongside."""
    seen: list = []

    def on_event(event) -> None:  # the client's reader thread
        seen.append(event)
        runner.handle(event)

    with WorkerClient(on_event=on_event) as client:
        runner = Runner(client)
        other = client.submit(SpeakJob("Another job.", SAMPLE_VOICE, model=str(tiny), hardware="cpu-16g"))
        results: list = []
        thread = threading.Thread(target=lambda: results.append(narrate(_narration(tiny, tmp_path), runner)))
        thread.start()
        thread.join(300)
        first_chunk = threading.Event()
        runner = Runner(client, lambda progress: progress.generated and first_chunk.set())
        canceller = threading.Thread(target=lambda: first_chunk.wait(300) and runner.cancel())  # as a Stop button
        canceller.start()
        with pytest.raises(NarrationCancelled):
            narrate(_narration(tiny, tmp_path / "cancelled"), runner)
        canceller.join()
    assert results[0].run.generated == 6
    assert any(isinstance(e, JobFinished) and e.job_id == other for e in seen)


def test_narration_modules_and_the_chunk_limit_of_a_registered_model_need_no_torch():
    code = ("import sys\nfrom inference.defaults import DEFAULT_MODEL\n"
            "from inference.narration.book import chunk_limit\nimport inference.narration.runner\n"
            "limit = chunk_limit(DEFAULT_MODEL, 'cpu-16g')\n"
            "print(limit, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    limit, torch_loaded = out.split()
    assert int(limit) >= 80 and torch_loaded == "False"
