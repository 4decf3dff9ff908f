"""Bad input gets one clear line on stderr, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from inference.cli import main, version
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


def _launch(tmp_path, args: list, stdin: bytes | None = None) -> str:
    """``launch.py`` in a real process that must fail cleanly: exit 2, one line, no traceback, no output."""
    result = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=tmp_path, input=stdin,
                            capture_output=True, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".wav", ".mp3", ".partial")]
    return err


def test_stdin_that_is_not_utf8_names_the_first_bad_byte(tmp_path):
    err = _launch(tmp_path, ["say", "-", "--voice", str(SAMPLE_VOICE), "--out", "out.wav"],
                  stdin=b"First line.\nSecond \xff\xfe\x00 line.")
    assert "not valid UTF-8: byte 0xff at offset 19 (line 2)" in err


def test_binary_stdin_and_binary_argument_are_refused(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    assert "byte 0x89 at offset 0" in _launch(tmp_path, ["say", "-", "--voice", str(SAMPLE_VOICE)], stdin=png)
    assert "text argument is not valid UTF-8" in _launch(tmp_path, [b"say", b"Hi \xc3(", "--voice", str(SAMPLE_VOICE)])


def test_utf16_stdin_with_a_byte_order_mark_is_read(tmp_path):
    """Decoded, then past the text checks: the empty text error proves it was read as UTF-16."""
    err = _launch(tmp_path, ["say", "-", "--voice", str(SAMPLE_VOICE)], stdin="\ufeff \t\x07 ".encode("utf-16"))
    assert "text is empty" in err


def test_argument_with_undecodable_bytes_in_process(capsys, tmp_path):
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, os.fsdecode(b"Caf\xe9 au lait."), "--voice",
                                                 str(SAMPLE_VOICE)), "byte 0xe9 at offset 3 (line 1)")


@pytest.mark.parametrize(("out", "pattern"), [
    (".", "is a folder"),
    ("narration.mp3", "the formats Vesper writes here are .wav"),
    ("narration", "has no extension"),
    ("missing/narration.wav", "does not exist"),
    ("a-file/narration.wav", "is a file, not a folder"),
])
def test_bad_output_fails_before_any_model_is_looked_up(tmp_path, out, pattern):
    (tmp_path / "a-file").write_text("")
    err = _launch(tmp_path, ["say", "Hello.", "--voice", str(SAMPLE_VOICE), "--model", "no-such-model",
                             "--out", out])
    assert pattern in err  # the output error, not the model's: --out is checked first


def test_output_in_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert "not writable" in _launch(tmp_path, ["say", "Hello.", "--voice", str(SAMPLE_VOICE),
                                                    "--out", "locked/x.wav"])
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this PyTorch has CUDA: the GPU preset can run here")
def test_gpu_preset_without_cuda_is_refused_in_one_line(capsys, tmp_path, tiny_checkpoint):
    model = tiny_checkpoint("pocket_tts")
    capsys.readouterr()  # building the checkpoint reports progress
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE), "--model",
                                                 str(model), "--hardware", "laptop-4060-8g"),
                          "this PyTorch has no CUDA")


@pytest.mark.parametrize(("spec", "pattern"), [
    ({"ram_total_bytes": 1, "gpus": [{"name": "x", "compute_capability": [8, 9]}]},
     "no field 'gpus[0].total_bytes': it needs a whole number (bytes)"),
    ({"ram_total_bytes": "16 GB"}, "wrong type for 'ram_total_bytes': it needs a whole number (bytes)"),
    ({"ram_total_bytes": 1, "gpus": [{"name": "x", "total_bytes": 1, "compute_capability": "8.9"}]},
     "'gpus[0].compute_capability': it needs a list of two whole numbers"),
])
def test_hardware_json_names_the_missing_or_mistyped_field(capsys, tmp_path, spec, pattern):
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(spec))
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(SAMPLE_VOICE),
                                                 "--hardware", str(path)), pattern)


def test_nan_reference_has_its_own_message(capsys, tmp_path):
    import soundfile as sf

    broken = tmp_path / "nan.wav"
    sf.write(broken, np.full(48000, np.nan, dtype=np.float32), 24000, subtype="FLOAT")
    _assert_clean_failure(capsys, tmp_path, _say(tmp_path, "Hello.", "--voice", str(broken)),
                          "invalid samples (NaN or infinity)")


def test_version(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "launch.py"), "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"vesper {version()}"
    assert version()[0].isdigit()
