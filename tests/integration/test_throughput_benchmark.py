"""benchmarks/throughput.py --arch at --scale tiny: the code path a GPU session runs, proven here first."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from support.families import HAS_TORCHVISION

from vcritic.testing import NEEDS_TORCHVISION

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARCHES = _load().ARCHES  # for the parameters; the tests use the fixture's copy


@pytest.fixture(scope="module")
def throughput():
    return _load()


def test_full_size_configs_have_the_released_parameter_counts(throughput, tmp_path):
    """Built on the meta device (no memory): 8.29 B for Qwen2.5-VL-7B as measured in issue 9, the published sizes of
    LLaVA-1.5-7B and InstructBLIP-Vicuna-7B, and Qwen3.5-0.8B/4B and Qwen3-VL-8B as transformers builds them (4.54 B
    and 8.77 B: the released 4.5 B and 8.77 B)."""
    import torch

    expected = {"qwen2.5-vl-7b": 8.292, "llava-1.5-7b": 7.063, "instructblip-vicuna-7b": 7.913, "qwen3.5-0.8b": 0.853,
                "qwen3.5-4b": 4.539, "qwen3-vl-8b": 8.767}  # fmt: skip
    for name, billions in expected.items():
        if name.startswith("qwen") and not HAS_TORCHVISION:
            continue
        critic, params, _ = throughput.build_arch(name, "full", tmp_path / name, "meta", torch.bfloat16)
        assert params / 1e9 == pytest.approx(billions, abs=1e-3), name
        assert set(throughput._parts(critic.model)) >= {"vision", "lm"}


# Image tokens at 448x448 under each family's released pixel budget (kept at tiny scale): 28 px per merged token for
# Qwen2.5-VL, 32 px for Qwen3-VL and Qwen3.5.
QWEN_448_TOKENS = {"qwen2_5_vl": 16 * 16, "qwen3_vl": 14 * 14, "qwen3_5": 14 * 14}


@pytest.mark.parametrize("name", sorted(ARCHES))
def test_every_arch_builds_at_tiny_scale_and_reads_an_image(throughput, name, tmp_path):
    """What the GPU session's families step runs: each entry builds on CPU and scores one 448 px image; the Qwen ones
    see as many image tokens as the released model does."""
    import torch

    from vcritic.readout.prompts import QUALITY

    family = ARCHES[name]["family"]
    if family in NEEDS_TORCHVISION and not HAS_TORCHVISION:
        pytest.skip("needs torchvision")
    critic, params, _ = throughput.build_arch(name, "tiny", tmp_path / "model", "cpu", torch.float32)
    assert critic.model.config.model_type == family and 0 < params < 10_000_000
    (path,) = throughput._jpegs(tmp_path / "images", 1, 448, 448)
    encoding = critic.encoder.encode_questions([QUALITY], throughput._open(path))
    (readout,) = critic.read_shared([QUALITY], critic.encoder.collate_questions([encoding]))
    assert readout.mean.shape == (1,) and torch.isfinite(readout.mean).all()
    assert readout.probs.sum().item() == pytest.approx(1.0, abs=1e-4)
    if family in QWEN_448_TOKENS:
        ids = encoding["prefix"]["input_ids"] if "prefix" in encoding else encoding["full"][0]["input_ids"]
        assert int((ids == critic.model.config.image_token_id).sum()) == QWEN_448_TOKENS[family]


def test_tiny_scale_run_prints_and_writes_every_figure(throughput, tmp_path, monkeypatch, capsys):
    out = tmp_path / "figures.jsonl"
    argv = ["throughput.py", "--arch", "llava-1.5-7b", "--scale", "tiny", "--images", "2", "--batch-sizes", "1", "2",
            "--workers", "0", "--out", str(out), "--peak-tflops", "1", "--pipeline", "both"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    throughput.main()
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["figure"] == "model" and records[0]["peak_tflops"] == 1
    rows = [r for r in records if r["figure"] == "throughput"]
    settings = [("448x448", 1), ("448x448", 2), ("1024x768", 1), ("1024x768", 2)]
    assert [(r["image"], r["batch"], r["pipeline"]) for r in rows] == [(*s, p) for s in settings
                                                                       for p in ("old", "overlap")]  # fmt: skip
    # The same rows from both loops, and the ratio the target is about.
    assert [r["max_abs_dmos_vs_old_pipeline"] for r in rows] == [None, 0.0] * 4
    assert all(r["e2e_over_forward"] == pytest.approx(r["e2e_img_s"] / r["forward_img_s"]) for r in rows)
    for row in rows:
        assert row["forward_img_s"] > 0 and row["e2e_img_s"] > 0 and row["flops_per_image"] > 0
        assert row["loader_img_s"] > 0
        assert row["split_s"]["vision"] > 0 and row["split_s"]["lm"] > 0
        assert row["split_s"]["vision"] + row["split_s"]["lm"] <= row["forward_s"]
        assert row["mfu"] == pytest.approx(row["tflops"] / 1)
        assert row["max_abs_dmos_vs_batch1"] < 1e-3  # CPU float32: batch invariant
        assert row["peak_mib"] > 0
    assert rows[0]["max_abs_dmos_vs_batch1"] == 0.0
    assert "448x448" in printed and "1024x768" in printed and "fwd img/s" in printed and " overlap " in printed


@pytest.mark.slow
@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_vision_attention_both_measures_before_and_after_in_one_run(throughput, tmp_path, monkeypatch):
    """--vision-attention both: every setting with the grouped and the stock vision attention, same scores."""
    out = tmp_path / "figures.jsonl"
    argv = ["throughput.py", "--arch", "qwen2.5-vl-7b", "--scale", "tiny", "--images", "2", "--batch-sizes", "2",
            "--workers", "0", "--out", str(out), "--vision-attention", "both"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    throughput.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r for r in rows if r["figure"] == "throughput"]
    expected = [("448x448", "grouped"), ("448x448", "sdpa"), ("1024x768", "grouped"), ("1024x768", "sdpa")]
    assert [(r["image"], r["vision_attention"]) for r in rows] == expected
    assert [r["max_abs_dmos_vs_other_attention"] is None for r in rows] == [True, False, True, False]
    assert all(r["max_abs_dmos_vs_other_attention"] < 1e-4 for r in rows[1::2])


def test_fixed_shapes_both_measures_each_mode_side_by_side(throughput, tmp_path, monkeypatch, capsys):
    """--fixed-shapes both: every setting in the default mode and in fixed shapes; fixed shapes do not drift."""
    out = tmp_path / "figures.jsonl"
    argv = ["throughput.py", "--arch", "llava-1.5-7b", "--scale", "tiny", "--images", "3", "--batch-sizes", "1", "2",
            "--workers", "0", "--out", str(out), "--fixed-shapes", "both"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    throughput.main()
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r for r in rows if r["figure"] == "throughput" and r["image"] == "448x448"]
    assert [(r["fixed_shapes"], r["batch"]) for r in rows] == [(False, 1), (False, 2), (True, 1), (True, 2)]
    assert [r["max_abs_dmos_vs_default_shapes"] is None for r in rows] == [True, True, False, False]
    assert all(r["max_abs_dmos_vs_batch1"] == 0.0 for r in rows[2:])
    assert all(r["e2e_img_s"] > 0 and r["flops_per_image"] == rows[0]["flops_per_image"] for r in rows)
    assert "448x448 fixed shapes vs default: e2e speed 1: " in printed


def test_analytic_flops_agree_with_torchs_counter(throughput, tiny_models, sample_images):
    """The fallback for torch releases whose FlopCounterMode fails on grouped-query SDPA counts exactly what torch's
    counter counts for matmuls and convolutions, and attention by the shapes' formula. Up to torch 2.14 the counter has
    no formula for SDPA's CPU kernel (it counts none); from 2.15 it counts SDPA on CPU too, by that same formula."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from vcritic.inference.loading import load_critic
    from vcritic.readout.prompts import QUALITY

    critic = load_critic(tiny_models("llava"))
    batch = critic.encoder.collate_questions([critic.encoder.encode_questions([QUALITY], sample_images["chelsea"])])
    with FlopCounterMode(display=False) as counter:
        critic.read_shared([QUALITY], batch)
    reference = counter.get_total_flops()
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, *args, **kwargs):
        calls.append(4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3])
        return real(q, k, *args, **kwargs)

    F.scaled_dot_product_attention = spy
    try:
        critic.read_shared([QUALITY], batch)
    finally:
        F.scaled_dot_product_attention = real
    q = torch.zeros(1, 1, 2, 4)
    with FlopCounterMode(display=False) as probe:
        F.scaled_dot_product_attention(q, q, q)
    attention_in_reference = sum(calls) if probe.get_total_flops() > 0 else 0
    without_attention = throughput.analytic_flops(lambda: critic.read_shared([QUALITY], batch), attention=False)
    assert reference > 0 and calls
    assert without_attention == reference - attention_in_reference
    counted = throughput.analytic_flops(lambda: critic.read_shared([QUALITY], batch))
    assert counted == reference - attention_in_reference + sum(calls)
