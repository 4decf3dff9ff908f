"""The voice library: add, list, rename, remove; clear errors; personal data kept private; the CLI."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import soundfile as sf

from inference.cli import main
from inference.errors import BadInputError
from inference.voice_library import UnknownVoiceError, VoiceLibrary
from tests.conftest import REPO, SAMPLE_TRANSCRIPT, SAMPLE_VOICE


@pytest.fixture
def library(tmp_path, monkeypatch) -> VoiceLibrary:
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    return VoiceLibrary()


def test_add_list_rename_remove(library, tmp_path):
    voice = library.add("Narrator", SAMPLE_VOICE, SAMPLE_TRANSCRIPT)
    assert voice.recording.read_bytes() == SAMPLE_VOICE.read_bytes()
    assert voice.transcript == SAMPLE_TRANSCRIPT
    assert [v.name for v in library.list()] == ["Narrator"]
    renamed = library.rename("Narrator", "Anna")
    assert renamed.content_hash == voice.content_hash  # projects keep their audio across a rename
    assert [v.name for v in library.list()] == ["Anna"]
    library.remove("Anna")
    assert library.list() == []


def test_hash_follows_content(library, tmp_path):
    first = library.add("a", SAMPLE_VOICE)
    assert library.add("b", SAMPLE_VOICE, "other words").content_hash != first.content_hash
    ogg = tmp_path / "voice.ogg"
    audio, rate = sf.read(SAMPLE_VOICE)
    sf.write(ogg, audio, rate, format="OGG")
    converted = library.add("c", ogg)
    assert converted.recording.suffix == ".flac"  # formats other than FLAC/WAV are stored as FLAC


def test_files_are_private(library):
    voice = library.add("me", SAMPLE_VOICE)
    folder = voice.recording.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(library.root.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_errors(library, tmp_path):
    library.add("me", SAMPLE_VOICE)
    with pytest.raises(BadInputError, match="already exists"):
        library.add("me", SAMPLE_VOICE)
    with pytest.raises(UnknownVoiceError, match="voices: me"):
        library.get("nobody")
    with pytest.raises(UnknownVoiceError):
        library.rename("nobody", "x")
    with pytest.raises(BadInputError, match="not a usable voice name"):
        library.add("../escape", SAMPLE_VOICE)
    with pytest.raises(BadInputError, match="does not exist"):
        library.add("x", tmp_path / "missing.wav")
    assert [v.name for v in library.list()] == ["me"]  # nothing half-added


def test_resolve_name_or_file(library):
    library.add("me", SAMPLE_VOICE, "stored words")
    assert library.resolve("me").transcript == "stored words"
    assert library.resolve("me", "given words").transcript == "given words"
    assert library.resolve(str(SAMPLE_VOICE)).recording == SAMPLE_VOICE
    with pytest.raises(UnknownVoiceError):
        library.resolve("someone")


def test_cli(library, capsys):
    assert main(["voices", "add", "me", str(SAMPLE_VOICE), "--text", "hello"]) == 0
    assert main(["voices", "rename", "me", "you"]) == 0
    capsys.readouterr()
    assert main(["voices", "list"]) == 0
    assert capsys.readouterr().out.startswith("you\t")
    assert main(["voices", "remove", "you"]) == 0
    assert main(["voices", "remove", "you"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vesper: No voice named 'you'") and "\n" not in err


def test_torch_free():
    code = ("import sys, inference.voice_library, inference.narration.book, inference.narration.runner; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
