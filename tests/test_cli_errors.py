"""Bad input gets one clear line on stderr, exit status 2, and nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inference.cli import main
from tests.conftest import REPO, SAMPLE_VOICE


def _say(tmp_path, *args: str) -> list[str]:
    return ["say", *args, "--out", str(tmp_path / "out.wav")]


def _assert_clean_failure(capsys, tmp_path, argv: list[str], pattern: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"expected one line, got: {err!r}"
    assert err.startswith("vesper: ")
    assert pattern.lower() in err.lower()
    assert not (tmp_path / "out.wav").exists()


def test_empty_text(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "   ", "--voice", str(SAMPLE_VOICE)), "text is empty")


def test_missing_reference(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(tmp_path / "nope.wav")),
                          "does not exist")


def test_reference_is_a_directory(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(tmp_path)), "not a file")


def test_non_audio_reference(capsys, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio")
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(fake)),
                          "not a readable audio file")


def test_unreadable_reference(capsys, tmp_path):
    locked = tmp_path / "locked.wav"
    locked.write_bytes(SAMPLE_VOICE.read_bytes())
    locked.chmod(0)
    try:
        if locked.open("rb"):  # root can read anything: nothing to test then
            pytest.skip("running as root: permissions are not enforced")
    except PermissionError:
        _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(locked)), "readable")
    finally:
        locked.chmod(0o600)


def test_too_short_reference(capsys, tmp_path):
    import soundfile as sf

    short = tmp_path / "short.wav"
    sf.write(short, [0.1, -0.1] * 2000, 24000)
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(short)), "at least")


def test_unknown_model(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path,
                          _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE), "--model", "no-such-model"),
                          "unknown model")


def test_model_folder_without_config(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path,
                          _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE), "--model", str(tmp_path)),
                          "no config.json")


def test_hub_model_not_cached_while_offline(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path,
                          _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE), "--model", "someone/uncached-tts"),
                          "--model /path/to")


def test_unknown_preset(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path,
                          _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE), "--hardware", "laptop-9999"),
                          "unknown hardware preset")


def test_plan_unknown_preset(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path, ["plan", "--hardware", "nope"], "unknown hardware preset")


def test_exit_status_from_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "launch.py", "say", "", "--voice", str(SAMPLE_VOICE),
                             "--out", str(tmp_path / "x.wav")], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["vesper: The text is empty: give at least one word to say."]
