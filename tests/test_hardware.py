"""Hardware descriptions and the dtype policy, against a table of real cards."""

from __future__ import annotations

import json

import pytest

from inference import hardware as hw
from inference.dtypes import dtype_policy
from inference.errors import HardwareSpecError
from tests.conftest import REPO

REAL_CARDS = [
    # name, compute capability, storage dtype, compute dtype
    ("NVIDIA GeForce RTX 4060 Laptop GPU", (8, 9), "bfloat16", "bfloat16"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", (8, 6), "bfloat16", "bfloat16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bfloat16", "bfloat16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "bfloat16", "bfloat16"),
    ("NVIDIA GeForce RTX 2070", (7, 5), "float16", "float16"),
    ("Tesla T4", (7, 5), "float16", "float16"),
    ("Tesla V100-SXM2-16GB", (7, 0), "float16", "float16"),
    ("NVIDIA GeForce GTX 1650", (7, 5), "float16", "float32"),  # fp16 math gives NaNs: upcast per module
    ("NVIDIA GeForce GTX 1660 Ti", (7, 5), "float16", "float32"),
    ("NVIDIA GeForce GTX 1060 6GB", (6, 1), "float16", "float32"),
    ("Tesla P100-PCIE-16GB", (6, 0), "float16", "float32"),
    ("NVIDIA GeForce GTX 980", (5, 2), "float32", "float32"),
]


@pytest.mark.parametrize("name,cc,storage,compute", REAL_CARDS)
def test_dtype_policy_for_real_cards(name, cc, storage, compute):
    policy = dtype_policy(hw.Gpu(0, name, 8 * hw.GiB, 8 * hw.GiB, cc, 4, 16))
    assert (policy.storage, policy.compute) == (storage, compute)
    assert policy.reason


def test_dtype_policy_cpu_is_fp32():
    assert dtype_policy(None).compute == "float32"


def test_every_required_preset_exists_and_round_trips_through_json(tmp_path):
    required = {"laptop-4050-6g", "laptop-4060-8g", "laptop-3060-6g", "laptop-3070-8g",
                "gtx1650-4g", "gtx1060-6g", "cpu-16g"}
    assert required <= set(hw.PRESETS)
    for name in required:
        preset = hw.resolve(name)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(preset.to_dict()))
        loaded = hw.resolve(str(path))
        assert loaded.gpus == preset.gpus
        assert loaded.ram_available_bytes == preset.ram_available_bytes


def test_preset_vram_matches_its_name():
    assert hw.PRESETS["laptop-4060-8g"].gpu.total_bytes == 8 * hw.GiB
    assert hw.PRESETS["gtx1650-4g"].gpu.total_bytes == 4 * hw.GiB
    assert hw.PRESETS["cpu-16g"].gpu is None


def test_pcie_bandwidth_estimate_scales_with_link():
    gen4x8 = hw.PRESETS["laptop-4060-8g"].gpu
    gen4x16 = hw.PRESETS["laptop-3070-8g"].gpu
    assert 10 < gen4x8.pinned_bandwidth_gbps < 15  # laptops on PCIe 4.0 x8 copy ~12-13 GB/s pinned
    assert gen4x16.pinned_bandwidth_gbps == pytest.approx(2 * gen4x8.pinned_bandwidth_gbps)


def test_detect_works_without_a_gpu():
    machine = hw.detect()
    assert machine.ram_total_bytes > 0 and machine.cpu_count >= 1
    if not machine.gpus:
        assert machine.gpu is None


@pytest.mark.parametrize("spec", ["laptop-9090-99g", "missing.json"])
def test_unknown_preset_or_missing_file_is_a_clear_error(spec):
    with pytest.raises(HardwareSpecError, match="preset|does not exist"):
        hw.resolve(spec)


def test_malformed_json_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"ram_total_bytes": 1, "gpus": [{"name": "x"}]}')
    with pytest.raises(HardwareSpecError, match=r"no field 'gpus\[0\].total_bytes': it needs a whole number"):
        hw.resolve(str(path))


@pytest.mark.parametrize(("text", "pattern"), [
    ("not json", "Cannot read hardware description"),
    ("[]", "the file must be a JSON object"),
    ('{"ram_total_bytes": true}', "wrong type for 'ram_total_bytes'"),
    ('{"ram_total_bytes": 1, "gpus": {}}', "wrong type for 'gpus': it needs a list of GPU objects"),
    ('{"ram_total_bytes": 1, "gpus": [7]}', "gpus\\[0\\] must be a JSON object"),
    ('{"ram_total_bytes": 1, "gpus": [{"name": "x", "total_bytes": 1, "compute_capability": [8]}]}',
     "compute_capability': it needs a list of two whole numbers"),
])
def test_each_malformed_field_is_named_with_its_type(tmp_path, text, pattern):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(HardwareSpecError, match=pattern):
        hw.from_json(path)


def test_readmes_example_description_reads_as_documented(tmp_path):
    """README's hardware JSON example is valid, with the sizes it shows."""
    readme = (REPO / "README.md").read_text()
    example = readme.split("describes a machine; sizes are whole numbers of bytes:\n\n```\n")[1].split("```")[0]
    path = tmp_path / "machine.json"
    path.write_text(example)
    machine = hw.from_json(path)
    assert machine.gpu.compute_capability == (8, 9) and machine.gpu.total_bytes == 8 * hw.GiB
    assert machine.ram_total_bytes == 16 * hw.GiB


def test_int8_capability_comes_from_the_cpu_flags_and_round_trips(tmp_path):
    assert hw.cpu_computes_int8("fpu sse4_2 avx2 fma avx512_vnni")
    assert not hw.cpu_computes_int8("fpu sse4_2 avx")
    path = tmp_path / "int8.json"
    path.write_text(json.dumps({**hw.PRESETS["cpu-16g"].to_dict(), "cpu_int8": True}))
    assert hw.resolve(str(path)).cpu_int8 and not hw.PRESETS["cpu-16g"].cpu_int8
